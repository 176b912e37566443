//! Byte searches that never ask the CPU what it can do.
//!
//! memchr's top-level functions choose the widest vector instructions at run time, and the
//! first call asks the CPU (CPUID). A virtual machine traps that question: it cost about
//! 0.1 ms here, a fifth of all the work of checking a 1,000-op history. SSE2 is part of
//! x86-64 itself, so searching with it needs no question; elsewhere memchr's portable
//! word-at-a-time search does the same job.

use memchr::arch::all::memchr as portable;
#[cfg(target_arch = "x86_64")]
use memchr::arch::x86_64::sse2::memchr as sse2;

/// The position of the first `needle` in `haystack`.
pub(crate) fn find(needle: u8, haystack: &[u8]) -> Option<usize> {
    // `new` answers from the compile-time target features: no CPUID.
    #[cfg(target_arch = "x86_64")]
    if let Some(searcher) = sse2::One::new(needle) {
        return searcher.find(haystack);
    }
    portable::One::new(needle).find(haystack)
}

/// The position of the last `needle` in `haystack`.
pub(crate) fn rfind(needle: u8, haystack: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(searcher) = sse2::One::new(needle) {
        return searcher.rfind(haystack);
    }
    portable::One::new(needle).rfind(haystack)
}

/// The position of the first `a` or `b` in `haystack`.
pub(crate) fn find_either(a: u8, b: u8, haystack: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(searcher) = sse2::Two::new(a, b) {
        return searcher.find(haystack);
    }
    portable::Two::new(a, b).find(haystack)
}

/// How many times `needle` occurs in `haystack`.
pub(crate) fn count(needle: u8, haystack: &[u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if let Some(searcher) = sse2::One::new(needle) {
        return searcher.count(haystack);
    }
    portable::One::new(needle).count(haystack)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The same answers as the plain definitions, on inputs long and short enough to
        /// reach both the vector loop and its scalar ends.
        #[test]
        fn searches_agree_with_their_definitions(
            haystack in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'"'), any::<u8>()], 0..200),
        ) {
            prop_assert_eq!(find(b'\n', &haystack), haystack.iter().position(|&b| b == b'\n'));
            prop_assert_eq!(rfind(b'\n', &haystack), haystack.iter().rposition(|&b| b == b'\n'));
            prop_assert_eq!(
                find_either(b'"', b'\\', &haystack),
                haystack.iter().position(|&b| b == b'"' || b == b'\\')
            );
            prop_assert_eq!(count(b'\n', &haystack), haystack.iter().filter(|&&b| b == b'\n').count());
        }
    }
}
