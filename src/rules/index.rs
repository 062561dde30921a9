//! The rule index behind [`RuleSet::matching`](super::RuleSet::matching).
//!
//! Each rule with an equality matcher on a non-empty value is filed under one such matcher (its
//! "anchor": the rarest `(label, value)` among its equality matchers); a rule can only match an
//! alert carrying its anchor label value, so the rest need not be evaluated. A rule without one
//! but with a regex matcher whose matches all start with a literal (`alertname=~"Kube.*"`) is
//! filed under that label and prefix instead. Only the remaining rules are always candidates. Candidates are visited in rule order by merging the sorted
//! posting lists, which keeps first-match semantics identical to a linear scan.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::matcher::MatchOp;
use super::{Labels, Rule};

/// A small multiplicative hasher (FxHash's scheme): label names and values are short, trusted
/// configuration strings, so SipHash's DoS resistance buys nothing and costs most of a lookup.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Posting lists (sorted rule indices) by label value.
type ByValue = FxMap<Box<str>, Box<[u32]>>;

/// Posting lists of rule indices, by anchor label name then value.
#[derive(Clone, Debug, Default)]
pub(crate) struct Index {
    /// One entry per distinct anchor label name (usually very few: alertname, auto_repair).
    by_name: Vec<(Box<str>, ByValue)>,
    /// Rules anchored on a regex's literal prefix, per label name.
    by_prefix: Vec<PrefixIndex>,
    /// Rules without an anchor, in order.
    scan: Box<[u32]>,
}

/// Rules whose regex matcher on one label requires a literal prefix.
#[derive(Clone, Debug)]
struct PrefixIndex {
    name: Box<str>,
    /// Distinct prefix lengths (bytes), ascending: the only slices of a value worth probing.
    lengths: Box<[usize]>,
    lists: ByValue,
}

impl Index {
    pub(crate) fn build(rules: &[Rule]) -> Index {
        assert!(u32::try_from(rules.len()).is_ok(), "too many rules");
        // Count how many rules use each (name, value) so each rule can be filed under its most
        // selective equality matcher.
        let mut counts: FxMap<(&str, &str), usize> = FxMap::default();
        for rule in rules {
            for m in rule.matchers.iter().filter(|m| is_anchor(m.op, &m.value)) {
                *counts.entry((&m.name, &m.value)).or_default() += 1;
            }
        }
        let mut postings: FxMap<&str, FxMap<&str, Vec<u32>>> = FxMap::default();
        let mut names_in_order: Vec<&str> = Vec::new();
        let mut scan = Vec::new();
        let mut prefixed: Vec<(&str, FxMap<&str, Vec<u32>>)> = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let idx = i as u32;
            let anchor = rule
                .matchers
                .iter()
                .filter(|m| is_anchor(m.op, &m.value))
                // min_by_key keeps the first of equal counts, so the choice is deterministic.
                .min_by_key(|m| counts[&(m.name.as_str(), m.value.as_str())]);
            match anchor {
                Some(m) => {
                    let by_value = postings.entry(&m.name).or_insert_with(|| {
                        names_in_order.push(&m.name);
                        FxMap::default()
                    });
                    by_value.entry(&m.value).or_default().push(idx);
                }
                None => {
                    let longest = rule
                        .matchers
                        .iter()
                        .filter_map(|m| Some((m.name.as_str(), m.required_prefix()?)))
                        .filter(|(_, p)| !p.is_empty())
                        .max_by_key(|(_, p)| p.len());
                    match longest {
                        Some((name, prefix)) => {
                            let pos = match prefixed.iter().position(|(n, _)| *n == name) {
                                Some(pos) => pos,
                                None => {
                                    prefixed.push((name, FxMap::default()));
                                    prefixed.len() - 1
                                }
                            };
                            prefixed[pos].1.entry(prefix).or_default().push(idx);
                        }
                        None => scan.push(idx),
                    }
                }
            }
        }
        let by_prefix = prefixed
            .into_iter()
            .map(|(name, lists)| {
                let mut lengths: Vec<usize> = lists.keys().map(|p| p.len()).collect();
                lengths.sort_unstable();
                lengths.dedup();
                PrefixIndex {
                    name: name.into(),
                    lengths: lengths.into(),
                    lists: lists
                        .into_iter()
                        .map(|(p, l)| (Box::from(p), l.into_boxed_slice()))
                        .collect(),
                }
            })
            .collect();
        let by_name = names_in_order
            .into_iter()
            .map(|name| {
                let values = postings
                    .remove(name)
                    .expect("name recorded with its postings")
                    .into_iter()
                    .map(|(v, list)| (Box::from(v), list.into_boxed_slice()))
                    .collect();
                (Box::from(name), values)
            })
            .collect();
        Index {
            by_name,
            by_prefix,
            scan: scan.into_boxed_slice(),
        }
    }

    /// Candidate posting lists for an alert, each sorted ascending.
    pub(crate) fn candidates<'a>(&'a self, labels: &Labels) -> Lists<'a> {
        let mut lists = Lists::new();
        if !self.scan.is_empty() {
            lists.push(&self.scan);
        }
        // Probe from whichever side is smaller: few anchor names (the usual case) means a
        // handful of BTreeMap lookups; many means one hash probe per alert label instead.
        if self.by_name.len() <= labels.len() {
            for (name, values) in &self.by_name {
                if let Some(list) = labels.get(&**name).and_then(|v| values.get(v.as_str())) {
                    lists.push(list);
                }
            }
        } else {
            for (name, value) in labels {
                if let Some((_, values)) = self.by_name.iter().find(|(n, _)| **n == **name)
                    && let Some(list) = values.get(value.as_str())
                {
                    lists.push(list);
                }
            }
        }
        for p in &self.by_prefix {
            let Some(value) = labels.get(&*p.name) else {
                continue;
            };
            for &len in p.lengths.iter().take_while(|&&len| len <= value.len()) {
                if value.is_char_boundary(len)
                    && let Some(list) = p.lists.get(&value[..len])
                {
                    lists.push(list);
                }
            }
        }
        lists
    }
}

fn is_anchor(op: MatchOp, value: &str) -> bool {
    // `foo=""` also matches an absent label, so it cannot narrow the candidates.
    op == MatchOp::Eq && !value.is_empty()
}

const INLINE: usize = 16;

/// Sorted posting lists being merged; the first few inline so the hot path does not allocate
/// (an empty `Vec` does not allocate either).
pub(crate) struct Lists<'a> {
    inline: [&'a [u32]; INLINE],
    len: usize,
    overflow: Vec<&'a [u32]>,
}

impl<'a> Lists<'a> {
    fn new() -> Self {
        Lists {
            inline: [&[]; INLINE],
            len: 0,
            overflow: Vec::new(),
        }
    }

    fn push(&mut self, list: &'a [u32]) {
        if self.len < INLINE {
            self.inline[self.len] = list;
            self.len += 1;
        } else {
            self.overflow.push(list);
        }
    }

    /// The smallest rule index left in any list, removed from its list.
    #[inline]
    pub(crate) fn pop_min(&mut self) -> Option<u32> {
        let mut best: Option<(&mut &'a [u32], u32)> = None;
        for l in self.inline[..self.len].iter_mut().chain(&mut self.overflow) {
            if let Some(&head) = l.first()
                && best.as_ref().is_none_or(|(_, b)| head < *b)
            {
                best = Some((l, head));
            }
        }
        let (list, head) = best?;
        *list = &list[1..];
        Some(head)
    }
}
