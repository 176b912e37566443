//! Polynomial fast path for registers with unique written values.
// TODO(helper): `pub fn check(ops: &[Op], initial: &Value, budget: &Budget) -> Option<KeyOutcome>`.
