use super::*;
use proptest::prelude::*;

fn same_points(left: &BTreeMap<i64, f64>, right: &BTreeMap<i64, f64>) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .all(|((t1, v1), (t2, v2))| t1 == t2 && v1.to_bits() == v2.to_bits())
}

fn same_agg(left: &Agg, right: &Agg) -> bool {
    left.count == right.count
        && [left.sum, left.min, left.max, left.last]
            .iter()
            .zip([right.sum, right.min, right.max, right.last])
            .all(|(a, b)| a.to_bits() == b.to_bits())
}

/// `decode_slots` as a map; it must list each index once, ascending.
fn decoded(bytes: &[u8]) -> Result<BTreeMap<u32, Agg>, String> {
    let slots = decode_slots(bytes)?;
    assert!(slots.windows(2).all(|pair| pair[0].0 < pair[1].0));
    Ok(slots.into_iter().collect())
}

fn same_slots(left: &BTreeMap<u32, Agg>, right: &BTreeMap<u32, Agg>) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .all(|((s1, a1), (s2, a2))| s1 == s2 && same_agg(a1, a2))
}

/// The slots of points, as the projection computes them: one per minute.
fn minute_slots(points: &BTreeMap<i64, f64>) -> BTreeMap<u32, Agg> {
    let mut slots: BTreeMap<u32, Agg> = BTreeMap::new();
    for (&timestamp, &value) in points {
        let slot = (timestamp / 60_000) as u32;
        let point = Agg::of_point(value);
        let merged = slots.get(&slot).map_or(point, |agg| agg.merge(point));
        slots.insert(slot, merged);
    }
    slots
}

#[test]
fn regular_integral_points_are_small() {
    let points: BTreeMap<i64, f64> = (0..3600).map(|s| (s * 1000, (s % 50) as f64)).collect();
    let bytes = encode_points(0, &points);
    assert!(bytes.len() < 3600 * 4, "{} bytes", bytes.len());
    assert_eq!(decode_points(0, &bytes).unwrap(), points);
}

#[test]
fn short_decimals_take_the_decimal_format() {
    // A wave rounded to 0.1, one point a minute: as the comparison's data set.
    let points: BTreeMap<i64, f64> = (0..60)
        .map(|m| {
            let value = 30.0 + 20.0 * (m as f64 / 9.0).sin();
            (m * 60_000, (value * 10.0).round() / 10.0)
        })
        .collect();
    let v2 = encode_points(0, &points);
    assert_eq!(v2[0], POINTS_V2);
    assert_eq!(v2[2], 1, "scale");
    assert!(v2.len() <= 3 + 60 * 3, "{} bytes", v2.len());
    let v1 = encode_points_at(0, &points, None);
    assert!(
        v1.len() > 2 * v2.len(),
        "v1 {} bytes, v2 {}",
        v1.len(),
        v2.len()
    );
    assert!(same_points(&decode_points(0, &v2).unwrap(), &points));
    assert!(same_points(&decode_points(0, &v1).unwrap(), &points));
}

#[test]
fn values_that_are_no_short_decimal_keep_the_bit_format() {
    for odd in [-0.0, 0.1 + 0.2, 1e300, f64::MIN_POSITIVE, 1.0 / 3.0] {
        let points: BTreeMap<i64, f64> = [(0, 1.5), (1000, odd)].into_iter().collect();
        let bytes = encode_points(0, &points);
        assert_eq!(bytes[0], POINTS_V1, "{odd:e}");
        assert!(same_points(&decode_points(0, &bytes).unwrap(), &points));
    }
}

#[test]
fn minute_slots_of_single_points_are_small() {
    let points: BTreeMap<i64, f64> = (0..1440)
        .map(|m| (m * 60_000, ((m % 97) as f64 * 0.3 * 10.0).round() / 10.0))
        .collect();
    let slots = minute_slots(&points);
    let bytes = encode_slots(&slots, 60);
    assert_eq!(bytes[0], SLOTS_V3);
    // 180 bytes of bitmap, then a header byte and one or two bytes of value per slot.
    assert!(bytes.len() < 1440 * 4, "{} bytes", bytes.len());
    // v3 adds block lengths and restarts the value chain: 24 blocks, about 2 % over v2.
    let v2 = encode_slots_v2_or_v3(&slots, None);
    assert_eq!(v2[0], SLOTS_V2);
    assert!(
        bytes.len() <= v2.len() + 24 * 4,
        "v3 {} bytes, v2 {}",
        bytes.len(),
        v2.len()
    );
    assert!(same_slots(&decoded(&v2).unwrap(), &slots));
    assert!(same_slots(&decoded(&bytes).unwrap(), &slots));
    assert!(same_slots(
        &decoded(&encode_slots_v1(&slots)).unwrap(),
        &slots
    ));
}

#[test]
fn hour_slots_keep_inexact_sums_exactly() {
    let points: BTreeMap<i64, f64> = (0..24 * 60)
        .map(|m| (m * 60_000, 0.1 * (m % 7) as f64 + 20.3))
        .map(|(t, v)| (t, (v * 10.0).round() / 10.0))
        .collect();
    let mut hours: BTreeMap<u32, Agg> = BTreeMap::new();
    for (&timestamp, &value) in &points {
        let slot = (timestamp / 3_600_000) as u32;
        let point = Agg::of_point(value);
        let merged = hours.get(&slot).map_or(point, |agg| agg.merge(point));
        hours.insert(slot, merged);
    }
    let bytes = encode_slots(&hours, 24);
    assert_eq!(bytes[0], SLOTS_V2);
    assert!(bytes.len() < 24 * 12, "{} bytes", bytes.len());
    assert!(same_slots(&decoded(&bytes).unwrap(), &hours));
}

#[test]
fn sparse_slots_use_deltas_and_raw_numbers_round_trip() {
    let slots: BTreeMap<u32, Agg> = [
        (7, Agg::of_point(1.0 / 3.0)),
        (
            700,
            Agg {
                count: u64::MAX >> 1,
                sum: f64::MAX,
                min: -0.0,
                max: f64::MIN_POSITIVE,
                last: 2.5,
            },
        ),
    ]
    .into_iter()
    .collect();
    let bytes = encode_slots(&slots, 60);
    assert_eq!(bytes[..4], [SLOTS_V3, 2, INDEX_DELTAS, 7]);
    assert!(same_slots(&decoded(&bytes).unwrap(), &slots));
    // A count v2's header cannot hold: written as v1.
    let huge: BTreeMap<u32, Agg> = [(
        0,
        Agg {
            count: u64::MAX,
            ..Agg::of_point(1.0)
        },
    )]
    .into_iter()
    .collect();
    let bytes = encode_slots(&huge, 60);
    assert_eq!(bytes[0], SLOTS_V1);
    assert!(same_slots(&decoded(&bytes).unwrap(), &huge));
    assert!(
        decode_slots(&encode_slots(&BTreeMap::new(), 60))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_repeated_slot_index_is_an_error() {
    let agg = Agg::of_point(1.5);
    let slots: BTreeMap<u32, Agg> = [(0, agg), (100, agg)].into_iter().collect();
    // v2 and v3, sparse: the version, the count, the delta layout, then deltas 0 and 100.
    for block in [None, Some(60)] {
        let mut bytes = encode_slots_v2_or_v3(&slots, block);
        let format = if block.is_some() { SLOTS_V3 } else { SLOTS_V2 };
        assert_eq!(bytes[..5], [format, 2, INDEX_DELTAS, 0, 100]);
        bytes[4] = 0;
        assert!(decode_slots(&bytes).is_err());
        assert!(decode_slots_in(&bytes, 50..=150).is_err());
    }
    // v1: the version, the count, then per slot its delta, its count and four numbers.
    let mut v1 = encode_slots_v1(&slots);
    assert_eq!([v1[0], v1[1], v1[2], v1[36]], [SLOTS_V1, 2, 0, 100]);
    v1[36] = 0;
    assert!(decode_slots(&v1).is_err());
}

#[test]
fn garbage_is_an_error() {
    assert!(decode_points(0, &[]).is_err());
    assert!(decode_points(0, &[1, 5, 0x80]).is_err());
    assert!(
        decode_points(0, &[2, 1, 10, 0, 0]).is_err(),
        "scale out of range"
    );
    assert!(decode_slots(&[1, 1, 0, 1, 0]).is_err());
    assert!(
        decode_slots(&[2, 1, 1, 9, 0xff]).is_err(),
        "bitmap truncated"
    );
    assert!(
        decode_slots(&[2, 1, 1, 8, 3, 0xff, 2, 0]).is_err(),
        "bitmap holds 2 slots"
    );
    assert!(
        decode_slots(&[2, 1, 0, 0, 11, 2, 0]).is_err(),
        "unknown mode"
    );
    assert!(decode_slots(&[4]).is_err());
    // v3: slots 0 and 64, decimals at scale 0, blocks of 6 slots (slot 64 is in block 10),
    // then each block's length and its one slot (count 1, last 1 or 2).
    assert!(
        decode_slots(&[3, 2, 0, 0, 64, 0, 0, 2, 2, 2, 2, 2, 4]).is_err(),
        "block length 0"
    );
    assert!(
        decode_slots(&[3, 2, 0, 0, 64, 0, 6, 2, 2, 2, 9, 2, 4]).is_err(),
        "block truncated"
    );
    assert!(
        decode_slots(&[3, 2, 0, 0, 64, 0, 6, 3, 2, 2, 0, 2, 2, 4]).is_err(),
        "trailing bytes in a block"
    );
    assert_eq!(
        decode_slots(&[3, 2, 0, 0, 64, 0, 6, 2, 2, 2, 2, 2, 4])
            .unwrap()
            .iter()
            .map(|(slot, agg)| (*slot, agg.last))
            .collect::<Vec<_>>(),
        [(0, 1.0), (64, 2.0)],
        "each block's chain starts afresh"
    );
}

/// A day of minute slots, one point each.
fn a_day_of_minutes() -> BTreeMap<u32, Agg> {
    (0..1440u32)
        .map(|m| (m, Agg::of_point(f64::from(m % 97) * 0.5)))
        .collect()
}

#[test]
fn a_range_read_decodes_only_the_blocks_it_covers() {
    let slots = a_day_of_minutes();
    let mut bytes = encode_slots(&slots, 60);
    assert_eq!(bytes[0], SLOTS_V3);
    // Layout: format, count (2 bytes), bitmap layout, bit count (2 bytes), 180 bytes of bitmap,
    // mode, block length, then the first block's length.
    let first_block = 1 + 2 + 1 + 2 + 180 + 1 + 1;
    assert_eq!(bytes[first_block - 1], 60);
    let hour: Vec<(u32, Agg)> = slots.range(600..=659).map(|(s, a)| (*s, *a)).collect();
    let read = decode_slots_in(&bytes, 600..=659).unwrap();
    assert_eq!(read.len(), 60);
    assert!(
        read.iter()
            .zip(&hour)
            .all(|(l, r)| l.0 == r.0 && same_agg(&l.1, &r.1))
    );
    // Garble the first block (slots 0–59): whole reads fail, the hour's read does not touch it.
    let mut reader = Reader {
        bytes: &bytes[first_block..],
    };
    let len = reader.varint().unwrap() as usize;
    let body = bytes.len() - reader.bytes.len();
    bytes[body..body + len].fill(0xff);
    assert!(decode_slots(&bytes).is_err());
    assert!(decode_slots_in(&bytes, 0..=10).is_err());
    let read = decode_slots_in(&bytes, 600..=659).unwrap();
    assert!(
        read.iter()
            .zip(&hour)
            .all(|(l, r)| l.0 == r.0 && same_agg(&l.1, &r.1))
    );
}

proptest! {
    #[test]
    fn points_round_trip(start in 0i64..1 << 40, raw in proptest::collection::btree_map(0i64..3_600_000, any::<f64>(), 0..200)) {
        let points: BTreeMap<i64, f64> = raw.into_iter().map(|(t, v)| (start + t, v)).collect();
        prop_assert!(same_points(&decode_points(start, &encode_points(start, &points)).unwrap(), &points));
    }

    #[test]
    fn decimal_points_round_trip(
        start in 0i64..1 << 40,
        scale in 0u8..=MAX_SCALE + 2,
        raw in proptest::collection::btree_map(0i64..3_600_000, -1i64 << 53..1 << 53, 0..200),
    ) {
        let power = 10f64.powi(i32::from(scale));
        let points: BTreeMap<i64, f64> = raw.into_iter().map(|(t, m)| (start + t, m as f64 / power)).collect();
        let bytes = encode_points(start, &points);
        prop_assert!(same_points(&decode_points(start, &bytes).unwrap(), &points));
        prop_assert!(same_points(&decode_points(start, &encode_points_at(start, &points, None)).unwrap(), &points));
    }

    #[test]
    fn slots_round_trip(raw in proptest::collection::btree_map(0u32..1440, (1u64..1000, -1e9f64..1e9), 0..100)) {
        let slots: BTreeMap<u32, Agg> = raw.into_iter().map(|(slot, (count, v))| {
            (slot, Agg { count, sum: v * count as f64, min: v - 1.0, max: v + 1.0, last: v })
        }).collect();
        prop_assert!(same_slots(&decoded(&encode_slots(&slots, 60)).unwrap(), &slots));
    }

    #[test]
    fn arbitrary_slots_round_trip(raw in proptest::collection::btree_map(any::<u32>(), (any::<u64>(), any::<[f64; 4]>()), 0..50)) {
        let slots: BTreeMap<u32, Agg> = raw.into_iter().map(|(slot, (count, [sum, min, max, last]))| {
            (slot, Agg { count, sum, min, max, last })
        }).collect();
        prop_assert!(same_slots(&decoded(&encode_slots(&slots, 60)).unwrap(), &slots));
    }

    #[test]
    fn rollups_of_decimal_points_round_trip(
        scale in 0u8..4,
        raw in proptest::collection::btree_map(0i64..86_400_000, -100_000i64..100_000, 0..400),
    ) {
        let power = 10f64.powi(i32::from(scale));
        let points: BTreeMap<i64, f64> = raw.into_iter().map(|(t, m)| (t, m as f64 / power)).collect();
        let slots = minute_slots(&points);
        prop_assert!(same_slots(&decoded(&encode_slots(&slots, 60)).unwrap(), &slots));
    }

    #[test]
    fn range_reads_are_whole_reads_filtered(
        raw in proptest::collection::btree_map(0u32..3000, (1u64..100, -1e6f64..1e6), 0..300),
        first in 0u32..3100,
        len in 0u32..1500,
        decimals in any::<bool>(),
    ) {
        let slots: BTreeMap<u32, Agg> = raw.into_iter().map(|(slot, (count, v))| {
            let v = if decimals { (v * 10.0).round() / 10.0 } else { v };
            (slot, Agg { count, sum: v * count as f64, min: v - 1.0, max: v + 1.0, last: v })
        }).collect();
        let wanted = first..=first.saturating_add(len);
        for bytes in [
            encode_slots(&slots, 60),
            encode_slots_v1(&slots),
            encode_slots_v2_or_v3(&slots, None),
            encode_slots_v2_or_v3(&slots, Some(60)),
        ] {
            let read = decode_slots_in(&bytes, wanted.clone()).unwrap();
            let expected: Vec<(u32, Agg)> = decode_slots(&bytes)
                .unwrap()
                .into_iter()
                .filter(|(slot, _)| wanted.contains(slot))
                .collect();
            prop_assert_eq!(read.len(), expected.len());
            prop_assert!(read.iter().zip(&expected).all(|(l, r)| l.0 == r.0 && same_agg(&l.1, &r.1)));
        }
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), start in any::<i64>()) {
        let _ = decode_points(start, &bytes);
        let _ = decode_slots(&bytes);
        let mut tagged = bytes.clone();
        tagged.insert(0, SLOTS_V2);
        let _ = decode_slots(&tagged);
        let _ = decode_slots_in(&tagged, 3..=70);
        tagged[0] = SLOTS_V3;
        let _ = decode_slots(&tagged);
        let _ = decode_slots_in(&tagged, start as u32..=(start as u32).saturating_add(100));
        tagged[0] = POINTS_V2;
        let _ = decode_points(start, &tagged);
    }
}
