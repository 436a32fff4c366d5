//! Torn tails and damaged segments: what a reopened log keeps, discards and refuses.

use super::*;

/// Appends three records to a one-shard log, damages the file with `damage(segment, start of
/// the last frame)`, reopens, and checks what survived: the first two records always, the
/// third unless `loses_last`; the cut bytes in one side file; appends and reads working after.
async fn survives_damage(damage: impl FnOnce(&Path, u64), loses_last: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(&dir);
    config.shard_count = 1;
    let tenant = run_tenant();
    let log = open(&config);
    let mut positions = Vec::new();
    for count in [10, 10, 5] {
        positions.push(stored(
            &log.append(events(&tenant, 3, count)).await.unwrap(),
        ));
    }
    let original = read_all(&log).await;
    log.shutdown().await;
    drop(log);

    let shard_dir = config.dir.join("shard-000");
    let segment = shard_dir.join("00000000000000000000.seg");
    let last_start = positions[2][0].sequence.to_u64().unwrap();
    let clean_len = std::fs::metadata(&segment).unwrap().len();
    damage(&segment, last_start);
    let damaged_len = std::fs::metadata(&segment).unwrap().len();
    let segment_copy = dir.path().join("damaged.seg");
    std::fs::copy(&segment, &segment_copy).unwrap();

    let log = open(&config);
    let kept = if loses_last { 20 } else { 25 };
    let cut_at = if loses_last { last_start } else { clean_len };
    assert_eq!(read_all(&log).await, original[..kept].to_vec());
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), cut_at);
    let side_files = files_with(&shard_dir, ".torn-");
    assert_eq!(side_files.len(), 1, "{side_files:?}");
    assert!(side_files[0].ends_with(format!("00000000000000000000.seg.torn-{cut_at:020}")));
    let damaged = std::fs::read(&segment_copy).unwrap();
    let cut_bytes = &damaged[cut_at as usize..];
    let data_len = cut_bytes
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(0, |at| at + 1);
    assert_eq!(
        std::fs::read(&side_files[0]).unwrap(),
        &cut_bytes[..data_len],
        "the side file holds exactly the cut bytes, less the zeros after them"
    );
    assert_eq!(damaged.len() as u64, damaged_len);

    let more = events(&tenant, 3, 4);
    let positions = stored(&log.append(more.clone()).await.unwrap());
    assert_eq!(positions[0].sequence, Sequence::from_u64(cut_at));
    let after = read_all(&log).await;
    assert_eq!(after.len(), kept + 4);
    let tail: Vec<Event> = after[kept..].iter().map(|(_, _, e)| e.clone()).collect();
    assert_eq!(tail, more);
    log.shutdown().await;
    drop(log);

    // The side file is never read again, and a clean log is not cut again.
    let log = open(&config);
    assert_eq!(read_all(&log).await, after);
    assert_eq!(files_with(&shard_dir, ".torn-").len(), 1);
}

fn set_len(path: &Path, len: u64) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(len).unwrap();
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

#[tokio::test]
async fn torn_tail_cut_inside_the_last_payload() {
    survives_damage(|segment, last| set_len(segment, last + 8 + 3), true).await;
}

#[tokio::test]
async fn torn_tail_cut_inside_the_last_header() {
    survives_damage(|segment, last| set_len(segment, last + 5), true).await;
}

#[tokio::test]
async fn torn_tail_of_garbage_after_the_last_frame() {
    survives_damage(|segment, _| append_bytes(segment, &[0xAB; 100]), false).await;
}

#[tokio::test]
async fn torn_frame_followed_by_zeros() {
    // A commit torn inside its frame, in a segment zeroed ahead: the frame is cut and kept
    // aside, the zeros after it are not copied.
    survives_damage(
        |segment, last| {
            set_len(segment, last + 8 + 3);
            append_bytes(segment, &[0; 64 * 1024]);
        },
        true,
    )
    .await;
}

#[tokio::test]
async fn zeroed_header_before_written_payload_is_torn_not_the_end() {
    // The page holding the last frame's header never reached the disk, a later one did: the
    // zeros at the frame boundary are not a clean end, because something follows them.
    survives_damage(
        |segment, last| {
            let mut bytes = std::fs::read(segment).unwrap();
            bytes[last as usize..last as usize + 8].fill(0);
            bytes.extend_from_slice(&[0; 4096]);
            std::fs::write(segment, bytes).unwrap();
        },
        true,
    )
    .await;
}

#[tokio::test]
async fn zeros_after_the_last_frame_are_a_clean_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(&dir);
    config.shard_count = 1;
    let tenant = run_tenant();
    let log = open(&config);
    for count in [10, 10, 5] {
        log.append(events(&tenant, 3, count)).await.unwrap();
    }
    let original = read_all(&log).await;
    log.shutdown().await;
    drop(log);

    let shard_dir = config.dir.join("shard-000");
    let segment = shard_dir.join("00000000000000000000.seg");
    let clean_len = std::fs::metadata(&segment).unwrap().len();
    // What a crash leaves of a segment zeroed ahead of its frames.
    append_bytes(&segment, &vec![0; 3 * 1024 * 1024 + 5]);

    let log = open(&config);
    assert_eq!(read_all(&log).await, original);
    assert!(
        files_with(&shard_dir, ".torn-").is_empty(),
        "zeros are not torn"
    );
    assert_eq!(log.head(&"0".to_owned()).unwrap().end_offset, clean_len);
    let more = events(&tenant, 3, 4);
    let positions = stored(&log.append(more.clone()).await.unwrap());
    assert_eq!(positions[0].sequence, Sequence::from_u64(clean_len));
    let after = read_all(&log).await;
    assert_eq!(after.len(), 29);
    log.shutdown().await;
    drop(log);

    // Stopping cuts the zeros after the frames; nothing is cut again on the next open.
    let end = std::fs::metadata(&segment).unwrap().len();
    assert!(end > clean_len);
    let log = open(&config);
    assert_eq!(read_all(&log).await, after);
    assert_eq!(log.head(&"0".to_owned()).unwrap().end_offset, end);
    assert!(files_with(&shard_dir, ".torn-").is_empty());
}

#[tokio::test]
async fn a_running_log_reopens_from_a_copy_with_its_zero_tail() {
    // A copy of the directory taken while the log runs is what a crash leaves behind: every
    // acknowledged frame, then the zeros written ahead of the next ones.
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(&dir);
    config.shard_count = 1;
    config.segment_bytes = 4096;
    config.preallocate_bytes = 1024;
    let tenant = run_tenant();
    let log = open(&config);
    for _ in 0..20 {
        log.append(events(&tenant, 2, 5)).await.unwrap();
    }
    let original = read_all(&log).await;
    let end = log.head(&"0".to_owned()).unwrap().end_offset;
    let copy = LogConfig {
        dir: dir.path().join("copy"),
        ..config.clone()
    };
    copy_dir(&config.dir, &copy.dir);
    let shard_dir = copy.dir.join("shard-000");
    let segments = files_with(&shard_dir, ".seg");
    assert!(segments.len() >= 2, "rolled: {segments:?}");
    let (active, closed) = segments.split_last().unwrap();
    let closed_len: u64 = closed
        .iter()
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum();
    assert!(
        std::fs::metadata(active).unwrap().len() > end - closed_len,
        "the active segment has zeros after its frames"
    );
    log.shutdown().await;
    drop(log);

    let reopened = open(&copy);
    assert_eq!(read_all(&reopened).await, original);
    assert!(files_with(&shard_dir, ".torn-").is_empty());
    assert_eq!(reopened.head(&"0".to_owned()).unwrap().end_offset, end);
    for _ in 0..20 {
        reopened.append(events(&tenant, 2, 5)).await.unwrap();
    }
    let after = read_all(&reopened).await;
    assert_eq!(after.len(), original.len() + 100);
    reopened.shutdown().await;
    drop(reopened);
    let reopened = open(&copy);
    assert_eq!(read_all(&reopened).await, after);
    assert!(files_with(&shard_dir, ".torn-").is_empty());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn flipped_byte_in_the_last_payload() {
    survives_damage(
        |segment, last| {
            let mut bytes = std::fs::read(segment).unwrap();
            let at = (last + 8 + 12) as usize;
            bytes[at] ^= 0xFF;
            std::fs::write(segment, bytes).unwrap();
        },
        true,
    )
    .await;
}

#[tokio::test]
async fn damage_in_an_old_segment_is_an_error_not_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(&dir);
    config.shard_count = 1;
    config.segment_bytes = 1024;
    let tenant = run_tenant();
    let log = open(&config);
    for _ in 0..20 {
        log.append(events(&tenant, 2, 5)).await.unwrap();
    }
    log.shutdown().await;
    drop(log);
    let shard_dir = config.dir.join("shard-000");
    let segments = files_with(&shard_dir, ".seg");
    assert!(segments.len() > 2);
    let mut bytes = std::fs::read(&segments[0]).unwrap();
    bytes[8 + 12] ^= 0xFF;
    std::fs::write(&segments[0], bytes).unwrap();

    // Opening still works (only the final segment is validated) and appends go on...
    let log = open(&config);
    log.append(events(&tenant, 2, 1)).await.unwrap();
    // ...but reading the damaged record fails loudly.
    let read = log.read(&"0".to_owned(), None, 10).await;
    assert!(matches!(read, Err(Error::Corrupt { .. })), "{read:?}");
}
