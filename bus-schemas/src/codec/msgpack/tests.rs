//! The slice reader against rmp-serde: same values, nothing accepted that rmp-serde refuses.

use super::SliceReader;
use crate::fixtures;
use crate::messages::{Heartbeat, RunSpec, TaskRecord, TelemetryBatch, WorkloadSpec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

const DEPTH: usize = 16;

fn ours<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let mut reader = SliceReader::new(bytes, DEPTH);
    let value = T::deserialize(&mut reader).ok()?;
    reader.at_end().then_some(value)
}

fn rmp_serde<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let mut cursor = std::io::Cursor::new(bytes);
    let value = {
        let mut de = rmp_serde::Deserializer::new(&mut cursor);
        de.set_max_depth(DEPTH);
        T::deserialize(&mut de).ok()?
    };
    (cursor.position() == bytes.len() as u64).then_some(value)
}

/// Whatever the reader accepts, rmp-serde accepts as the same value (compared encoded, so
/// that a NaN equals itself).
fn agrees<T: Serialize + DeserializeOwned + Debug>(bytes: &[u8]) {
    if let Some(value) = ours::<T>(bytes) {
        let theirs = rmp_serde::<T>(bytes);
        assert!(
            theirs.is_some(),
            "rmp-serde refuses {bytes:02x?}, read as {value:?}"
        );
        assert_eq!(
            rmp_serde::to_vec_named(&value).unwrap(),
            rmp_serde::to_vec_named(&theirs).unwrap()[..],
            "bytes {bytes:02x?}"
        );
    }
}

/// `value`'s bytes are read, as rmp-serde reads them, and so is every corruption of them
/// that the reader accepts (each byte replaced by markers of every kind, every truncation).
fn check<T: Serialize + DeserializeOwned + Debug>(value: &T) {
    let bytes = rmp_serde::to_vec_named(value).unwrap();
    assert!(ours::<T>(&bytes).is_some(), "{value:?} is not read");
    agrees::<T>(&bytes);
    let replacements = [
        0x00, 0x01, 0x7f, 0x80, 0x81, 0x8f, 0x90, 0x91, 0xa0, 0xa1, 0xa5, 0xbf, 0xc0, 0xc1, 0xc2,
        0xc3, 0xc4, 0xc7, 0xca, 0xcb, 0xcc, 0xcf, 0xd0, 0xd3, 0xd4, 0xd9, 0xdc, 0xde, 0xdf, 0xe0,
        0xff,
    ];
    let mut corrupt = bytes.clone();
    for i in 0..bytes.len() {
        for r in replacements
            .into_iter()
            .chain([bytes[i] ^ 0x20, bytes[i].wrapping_add(1)])
        {
            corrupt[i] = r;
            agrees::<T>(&corrupt);
        }
        corrupt[i] = bytes[i];
        agrees::<T>(&bytes[..i]);
    }
    let mut longer = bytes.clone();
    longer.push(0xc0);
    assert!(ours::<T>(&longer).is_none(), "a byte after the value");
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Shape {
    Dot,
    Circle(f64),
    Pair(u8, i64),
    Box { w: u32, h: u32 },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Unit;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Odd {
    shapes: Vec<Shape>,
    unit: Unit,
    nested: Option<Option<u16>>,
    tuple: (i8, f32, bool),
    #[serde(with = "serde_bytes_like")]
    raw: Vec<u8>,
    text: String,
    signed: Vec<i64>,
}

/// Bytes as MessagePack binary (serde's `Vec<u8>` is a sequence of numbers).
mod serde_bytes_like {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
        }
        d.deserialize_bytes(Bytes)
    }
}

#[test]
fn herds_messages_decode_as_rmp_serde_decodes_them() {
    check::<Heartbeat>(&fixtures::heartbeat(3));
    check::<WorkloadSpec>(&fixtures::workload_spec());
    check::<TelemetryBatch>(&fixtures::telemetry_batch(2));
    check::<RunSpec>(&fixtures::run_spec());
    check::<TaskRecord>(&fixtures::task_record());
}

#[test]
fn every_kind_of_value_decodes_as_rmp_serde_decodes_it() {
    check(&Odd {
        shapes: vec![
            Shape::Dot,
            Shape::Circle(1.5),
            Shape::Pair(7, -300),
            Shape::Box { w: 70_000, h: 3 },
        ],
        unit: Unit,
        nested: Some(Some(513)),
        tuple: (-5, 0.25, true),
        raw: vec![0, 255, 7],
        text: "härd ✓".into(),
        signed: vec![-1, -33, -129, -40_000, -3_000_000_000, 1 << 40],
    });
    check(&Odd {
        shapes: vec![],
        unit: Unit,
        nested: None,
        tuple: (0, -1.0, false),
        raw: vec![],
        text: String::new(),
        signed: vec![],
    });
}

#[test]
fn a_unit_variant_in_a_map_holds_nil() {
    // {"Dot": nil} is a unit variant, {"Dot": false} is not; 0 is the first variant.
    for (bytes, read) in [
        (&[0x81, 0xa3, b'D', b'o', b't', 0xc0][..], true),
        (&[0x81, 0xa3, b'D', b'o', b't', 0xc2][..], false),
        (&[0x00][..], true),
        (
            &[
                0x82, 0xa3, b'D', b'o', b't', 0xc0, 0xa3, b'D', b'o', b't', 0xc0,
            ][..],
            false,
        ),
    ] {
        assert_eq!(ours::<Shape>(bytes).is_some(), read, "{bytes:02x?}");
        assert_eq!(rmp_serde::<Shape>(bytes).is_some(), read, "{bytes:02x?}");
    }
}

#[test]
fn depth_is_limited_as_rmp_serde_limits_it() {
    for levels in DEPTH - 2..DEPTH + 2 {
        let mut bytes = vec![0x91; levels];
        bytes.push(0xc0);
        let ours = ours::<serde::de::IgnoredAny>(&bytes).is_some();
        let theirs = rmp_serde::<serde::de::IgnoredAny>(&bytes).is_some();
        assert_eq!(ours, theirs, "{levels} levels");
    }
}

#[test]
fn field_names_that_are_not_utf8_are_unknown_fields() {
    // {"\xff": 1, "seq": ...} as a heartbeat: the first is skipped, as rmp-serde skips it.
    let hb = fixtures::heartbeat(0);
    let mut bytes = rmp_serde::to_vec_named(&hb).unwrap();
    let fields = bytes[0] & 0x0f;
    bytes[0] = 0x80 | (fields + 1);
    bytes.splice(1..1, [0xa1, 0xff, 0x01]);
    assert_eq!(ours::<Heartbeat>(&bytes), Some(hb.clone()));
    assert_eq!(rmp_serde::<Heartbeat>(&bytes), Some(hb));
}
