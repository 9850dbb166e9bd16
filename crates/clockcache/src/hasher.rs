//! The default hasher: ahash with a random seed per cache, behind a type of
//! the crate's own, so that the hash function can change without changing
//! the public type `Cache<K, V>`.

use std::hash::{BuildHasher, Hasher};

/// The default `BuildHasher` of a [`Cache`](crate::Cache): a keyed hash
/// (ahash today) whose seed is drawn at random for each cache, so that keys
/// chosen by an attacker cannot be made to collide.
#[derive(Clone, Debug, Default)]
pub struct DefaultHashBuilder(ahash::RandomState);

impl DefaultHashBuilder {
    /// A builder with a fresh random seed.
    pub fn new() -> Self {
        Self(ahash::RandomState::new())
    }
}

impl BuildHasher for DefaultHashBuilder {
    type Hasher = DefaultHasher;

    #[inline]
    fn build_hasher(&self) -> DefaultHasher {
        DefaultHasher(self.0.build_hasher())
    }
}

/// The hasher [`DefaultHashBuilder`] builds.
#[derive(Clone, Debug)]
pub struct DefaultHasher(ahash::AHasher);

impl Hasher for DefaultHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0.finish()
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes)
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.0.write_u8(i)
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.0.write_u16(i)
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.0.write_u32(i)
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0.write_u64(i)
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.0.write_u128(i)
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.0.write_usize(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_builder_has_its_own_seed_and_is_deterministic() {
        let (a, b) = (DefaultHashBuilder::new(), DefaultHashBuilder::new());
        assert_eq!(a.hash_one(42u64), a.hash_one(42u64));
        assert_eq!(a.hash_one("k"), a.clone().hash_one("k"));
        assert_ne!(a.hash_one(42u64), b.hash_one(42u64));
    }
}
