//! [`Labels`]: a node's or a workload's `key=value` pairs, a map on the wire.
//!
//! A newtype over the map for one reason: decoded in place ([`crate::codec::decode_into`]), as
//! the coordinator decodes 20,000 heartbeats a second, labels that did not change (nearly
//! always) keep their strings instead of being rebuilt and freed each time.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Deref, DerefMut};

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Labels(pub BTreeMap<String, String>);

impl Labels {
    pub fn new() -> Labels {
        Labels::default()
    }
}

impl Deref for Labels {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Labels {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Labels {
        Labels(map)
    }
}

impl<const N: usize> From<[(String, String); N]> for Labels {
    fn from(pairs: [(String, String); N]) -> Labels {
        Labels(pairs.into())
    }
}

impl FromIterator<(String, String)> for Labels {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Labels {
        Labels(iter.into_iter().collect())
    }
}

impl IntoIterator for Labels {
    type Item = (String, String);
    type IntoIter = std::collections::btree_map::IntoIter<String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
        BTreeMap::deserialize(d).map(Labels)
    }

    /// Compares what arrives with the labels in `place`, entry by entry; only from the first
    /// difference on are strings made, and `place` replaced.
    fn deserialize_in_place<D: Deserializer<'de>>(
        d: D,
        place: &mut Labels,
    ) -> Result<(), D::Error> {
        d.deserialize_map(InPlace(place))
    }
}

struct InPlace<'a>(&'a mut Labels);

impl<'de> Visitor<'de> for InPlace<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of labels")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let place = &mut self.0 .0;
        // How many entries, from the first, equal the ones at the same position in `place`;
        // then the first that differs, or the end of what arrived.
        let mut same = 0usize;
        let mut differs = None;
        let mut ended = false;
        for (k, v) in place.iter() {
            let Some(key) = map.next_key_seed(Same(k))? else {
                ended = true;
                break;
            };
            let value = map.next_value_seed(Same(v))?;
            if key.is_none() && value.is_none() {
                same += 1;
                continue;
            }
            differs = Some((
                key.unwrap_or_else(|| k.clone()),
                value.unwrap_or_else(|| v.clone()),
            ));
            break;
        }
        if same == place.len() {
            // Every entry as before: only what follows (if anything) is added.
            while let Some((k, v)) = map.next_entry::<String, String>()? {
                place.insert(k, v);
            }
            return Ok(());
        }
        let mut new: BTreeMap<String, String> = place
            .iter()
            .take(same)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        new.extend(differs);
        if !ended {
            while let Some((k, v)) = map.next_entry::<String, String>()? {
                new.insert(k, v);
            }
        }
        *place = new;
        Ok(())
    }
}

/// A string compared with `expected`: `None` when equal (nothing allocated), the string
/// otherwise.
struct Same<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for Same<'_> {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Same<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Option<String>, E> {
        Ok((s != self.0).then(|| s.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Option<String>, E> {
        Ok((s != self.0).then_some(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, decode_into, encode, DecodeLimits, Encoding};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Decoded in place over any labels, the result is what a plain decode gives.
    #[test]
    fn in_place_decoding_equals_a_fresh_decode_whatever_was_there() {
        let cases = [
            labels(&[]),
            labels(&[("rack", "r1")]),
            labels(&[("rack", "r2")]),
            labels(&[("gpu", "a100"), ("rack", "r1")]),
            labels(&[("rack", "r1"), ("zone", "z")]),
            labels(&[("a", "1"), ("rack", "r1"), ("zone", "z")]),
            labels(&[("rack", "")]),
        ];
        let limits = DecodeLimits::default();
        for wire in &cases {
            let bytes = encode(wire, Encoding::MsgPack).unwrap();
            let fresh: Labels = decode(&bytes, Encoding::MsgPack, &limits).unwrap();
            assert_eq!(&fresh, wire);
            for before in &cases {
                let mut place = before.clone();
                decode_into(&bytes, Encoding::MsgPack, &limits, &mut place).unwrap();
                assert_eq!(place, fresh, "{before:?} decoded over by {wire:?}");
            }
        }
    }

    /// Labels that did not change keep their strings: the same buffers, not new ones.
    #[test]
    fn unchanged_labels_keep_their_strings() {
        let mut place = labels(&[("rack", "r1"), ("zone", "z")]);
        let before = place.get("rack").unwrap().as_ptr();
        let bytes = encode(&place.clone(), Encoding::MsgPack).unwrap();
        decode_into(
            &bytes,
            Encoding::MsgPack,
            &DecodeLimits::default(),
            &mut place,
        )
        .unwrap();
        assert_eq!(place.get("rack").unwrap().as_ptr(), before);
    }

    #[test]
    fn json_is_a_plain_object() {
        let l = labels(&[("rack", "r1")]);
        assert_eq!(serde_json::to_string(&l).unwrap(), r#"{"rack":"r1"}"#);
        let back: Labels = serde_json::from_str(r#"{"rack":"r1"}"#).unwrap();
        assert_eq!(back, l);
    }
}
