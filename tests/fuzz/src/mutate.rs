//! The mutations: byte-level edits for any input, and value-level edits for JSON, where most
//! byte edits would only break the syntax and never reach the code that uses the values.

use joyrt_core::Rng;
use serde_json::Value;

/// Values that sit on the edges a loader must check: zero, negatives, the integer widths' limits,
/// sizes whose products or sums overflow, non-integers and the wrong types.
const EDGE_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "3",
    "7",
    "255",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "1000000000",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "1e308",
    "-1e308",
    "1e-300",
    "0.5",
    "-0.0",
    "1.5",
];

/// Seeded choices over joyrt's own generator (SplitMix64), so a run reproduces from its seed.
pub struct Mutator {
    rng: Rng,
}

impl Mutator {
    pub fn new(seed: u64) -> Mutator {
        Mutator { rng: Rng::new(seed) }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// One to a few byte-level edits of `data`, each at a position below `focus` with
    /// three chances in four (a header, where the structure is), else anywhere.
    pub fn bytes(&mut self, data: &[u8], focus: usize) -> Vec<u8> {
        let mut out = data.to_vec();
        for _ in 0..1 + self.below(3) {
            let bound = if self.chance(75) { focus.min(out.len()) } else { out.len() };
            let at = if bound == 0 { 0 } else { self.below(bound) };
            let last = out.len().saturating_sub(1);
            match self.below(7) {
                0 if !out.is_empty() => out[at.min(last)] ^= 1 << self.below(8),
                1 if !out.is_empty() => {
                    out[at.min(last)] = [0, 0xff, 0x7f, 0x80, b'"', b'{', b'9'][self.below(7)]
                }
                2 => {
                    let end = (at + 1 + self.below(16)).min(out.len());
                    out.drain(at.min(end)..end);
                }
                3 => {
                    let extra: Vec<u8> = (0..1 + self.below(8)).map(|_| self.next_u64() as u8).collect();
                    out.splice(at..at, extra);
                }
                4 => {
                    let end = (at + 1 + self.below(32)).min(out.len());
                    let copy = out[at.min(end)..end].to_vec();
                    let to = self.below(out.len() + 1);
                    out.splice(to..to, copy);
                }
                5 => out.truncate(at),
                _ if at + 8 <= out.len() => {
                    // An edge integer written over eight bytes (a little-endian length or offset).
                    let v = [0u64, u64::MAX, 1 << 63, u32::MAX as u64, 1 << 32, 0x7fff_ffff][self.below(6)];
                    out[at..at + 8].copy_from_slice(&v.to_le_bytes());
                }
                _ => out.push(self.next_u64() as u8),
            }
        }
        out
    }

    /// One to a few value-level edits of a JSON document: a value replaced by an edge number, a
    /// string, null, an empty or nested container; a key removed; an array element duplicated.
    /// Returns the document as text.
    pub fn json(&mut self, doc: &Value) -> Vec<u8> {
        let mut doc = doc.clone();
        for _ in 0..1 + self.below(3) {
            let paths = leaf_paths(&doc);
            if paths.is_empty() {
                break;
            }
            let path = paths[self.below(paths.len())].clone();
            let (parent, last) = path.split_at(path.len() - 1);
            let Some(container) = pointer_mut(&mut doc, parent) else { continue };
            match self.below(6) {
                0 => {
                    if let Value::Object(m) = container {
                        m.remove(&last[0]);
                    }
                }
                1 => {
                    if let Value::Array(a) = container {
                        if let Ok(i) = last[0].parse::<usize>() {
                            let v = a[i].clone();
                            let copies = 1 + self.below(4);
                            a.splice(i..i, std::iter::repeat_n(v, copies));
                        }
                    }
                }
                choice => {
                    let v = match choice {
                        2 | 3 => serde_json::from_str(EDGE_NUMBERS[self.below(EDGE_NUMBERS.len())])
                            .unwrap_or(Value::Null),
                        4 => {
                            [Value::Null, Value::Bool(true), Value::String("<|im_end|>\u{0}\u{202e}".into())]
                                [self.below(3)]
                            .clone()
                        }
                        _ => [
                            Value::Array(vec![]),
                            serde_json::json!({}),
                            serde_json::json!([[1, 2], {"a": -1}]),
                        ][self.below(3)]
                        .clone(),
                    };
                    if let Some(slot) = child_mut(container, &last[0]) {
                        *slot = v;
                    }
                }
            }
        }
        serde_json::to_vec(&doc).unwrap_or_default()
    }
}

/// Every path (keys and array indices) from the root to a value, shortest first.
fn leaf_paths(doc: &Value) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![(Vec::new(), doc)];
    while let Some((path, v)) = stack.pop() {
        let children: Vec<(String, &Value)> = match v {
            Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
            Value::Array(a) => a.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(),
            _ => Vec::new(),
        };
        for (k, child) in children {
            let mut p: Vec<String> = path.clone();
            p.push(k);
            out.push(p.clone());
            // Large vocabularies and merge lists would swamp the choice: a few of each suffice.
            if out.len() < 4096 {
                stack.push((p, child));
            }
        }
    }
    out
}

fn child_mut<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    match v {
        Value::Object(m) => m.get_mut(key),
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    }
}

fn pointer_mut<'a>(mut v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    for key in path {
        v = child_mut(v, key)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_deterministic_and_change_the_input() {
        let data: Vec<u8> = (0..200u8).collect();
        let doc = serde_json::json!({"a": 1, "b": [1, 2, {"c": "x"}]});
        let (mut m1, mut m2) = (Mutator::new(7), Mutator::new(7));
        let mut changed = 0;
        for _ in 0..100 {
            let (b1, b2) = (m1.bytes(&data, 16), m2.bytes(&data, 16));
            assert_eq!(b1, b2);
            changed += usize::from(b1 != data);
            assert_eq!(m1.json(&doc), m2.json(&doc));
        }
        assert!(changed > 90, "{changed} of 100 byte mutations changed the input");
    }
}
