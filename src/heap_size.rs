//! What owned strings, lists and hash-map entries cost on the heap.
//!
//! A shard charges each open index against its memory budget with the bytes
//! the index says it holds, and reserves an estimate of them before a
//! download. Every structure counts with these helpers, so all of them agree
//! on what one allocation costs: its buffer's capacity plus the allocator's
//! header and rounding.

use std::collections::HashMap;

/// What one allocation costs beyond the bytes asked for. The allocator
/// rounds each request up to a size class (jemalloc, the binary's: steps of 16
/// bytes up to 128, a quarter of the size above); glibc also adds an 8-byte
/// header. 16 bytes is about either's cost for the small strings and lists an
/// index holds.
pub(crate) const ALLOC: usize = 16;

/// The heap buffer behind a list: its capacity, plus a header when it holds
/// an allocation at all (an empty `Vec::new()` does not).
pub(crate) fn buffer<T>(v: &Vec<T>) -> usize {
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if bytes == 0 { 0 } else { bytes + ALLOC }
}

/// A string's heap buffer (its slot, 24 bytes, is counted by its owner).
pub(crate) fn string(s: &String) -> usize {
    if s.capacity() == 0 { 0 } else { s.capacity() + ALLOC }
}

/// An optional string's heap buffer.
pub(crate) fn optional(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, string)
}

/// A list of strings: the list's buffer and every string's.
pub(crate) fn strings(v: &Vec<String>) -> usize {
    buffer(v) + v.iter().map(string).sum::<usize>()
}

/// A hash map's table: a slot for every bucket (key, value and a control
/// byte), buckets a power of two above the capacity at 7/8 load. Heap the
/// keys and values own is the caller's to add.
pub(crate) fn table<K, V>(m: &HashMap<K, V>) -> usize {
    if m.capacity() == 0 {
        return 0;
    }
    let buckets = (m.capacity() * 8).div_ceil(7).next_power_of_two();
    buckets * (std::mem::size_of::<(K, V)>() + 1) + ALLOC
}

/// A map keyed by strings: its table, every key's buffer, and the heap
/// `value` says each value owns.
pub(crate) fn string_map<V>(m: &HashMap<String, V>, value: impl Fn(&V) -> usize) -> usize {
    table(m) + m.iter().map(|(k, v)| string(k) + value(v)).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_containers_own_no_allocation() {
        assert_eq!(string(&String::new()), 0);
        assert_eq!(buffer::<u32>(&Vec::new()), 0);
        assert_eq!(optional(&None), 0);
    }

    #[test]
    fn buffers_count_capacity_and_one_header() {
        let mut s = String::with_capacity(100);
        s.push('a');
        assert_eq!(string(&s), 100 + ALLOC);
        let v: Vec<u32> = Vec::with_capacity(10);
        assert_eq!(buffer(&v), 40 + ALLOC);
        let names = vec!["ab".to_string(), "cde".to_string()];
        assert_eq!(
            strings(&names),
            names.capacity() * 24 + ALLOC + (2 + ALLOC) + (3 + ALLOC)
        );
    }

    #[test]
    fn a_table_counts_every_bucket_it_allocated() {
        let mut m: HashMap<String, u32> = HashMap::new();
        assert_eq!(table(&m), 0);
        m.insert("a".into(), 1);
        let buckets = table(&m) - ALLOC;
        // (24 + 4, padded to 32) + 1 control byte per bucket.
        assert_eq!(buckets % 33, 0);
        assert!(buckets / 33 > m.len());
    }
}
