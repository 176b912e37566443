//! HTML rendering. TODO(lead)
