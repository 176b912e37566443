//! Counterexamples. TODO(lead)
