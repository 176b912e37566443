//! The sequential specification the clients' history is checked against: one register
//! holding an optional integer, with write, compare-and-set and read.
//!
//! stateright's own `Register` has no compare-and-set, so this is the same idea with one more
//! operation. The model's clients all work on a single key, so one register is the whole
//! observable state.

use serde::Serialize;
use stateright::semantics::SequentialSpec;

/// A client operation on the register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Op {
    Write(i64),
    /// Set to `new` if the register holds `expected` (`None`: never written).
    Cas {
        expected: Option<i64>,
        new: i64,
    },
    Read,
}

/// What an operation returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Ret {
    /// A write, or a compare-and-set that matched.
    Ok,
    /// A compare-and-set that did not match: no effect.
    CasFailed,
    /// A read's value.
    Value(Option<i64>),
}

/// The register: `None` until first written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct CasRegister(pub Option<i64>);

impl SequentialSpec for CasRegister {
    type Op = Op;
    type Ret = Ret;

    fn invoke(&mut self, op: &Op) -> Ret {
        match *op {
            Op::Write(v) => {
                self.0 = Some(v);
                Ret::Ok
            }
            Op::Cas { expected, new } => {
                if self.0 == expected {
                    self.0 = Some(new);
                    Ret::Ok
                } else {
                    Ret::CasFailed
                }
            }
            Op::Read => Ret::Value(self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_register_semantics() {
        let mut r = CasRegister::default();
        assert_eq!(r.invoke(&Op::Read), Ret::Value(None));
        assert_eq!(
            r.invoke(&Op::Cas {
                expected: Some(1),
                new: 2
            }),
            Ret::CasFailed
        );
        assert_eq!(r.invoke(&Op::Write(1)), Ret::Ok);
        assert_eq!(
            r.invoke(&Op::Cas {
                expected: Some(1),
                new: 2
            }),
            Ret::Ok
        );
        assert_eq!(r.invoke(&Op::Read), Ret::Value(Some(2)));
        assert!(CasRegister::default().is_valid_history(vec![
            (Op::Write(3), Ret::Ok),
            (Op::Read, Ret::Value(Some(3)))
        ]));
        assert!(!CasRegister::default()
            .is_valid_history(vec![(Op::Write(3), Ret::Ok), (Op::Read, Ret::Value(None))]));
    }
}
