//! General linearizability search.
// TODO(helper): `pub fn check<M: Model>(model: &M, ops: &[Op], budget: &Budget) -> KeyOutcome`.
