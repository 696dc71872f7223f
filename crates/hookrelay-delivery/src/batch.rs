//! Packing events into destination batches, and the size AWS counts for a message: pure
//! functions, no I/O.

use crate::destinations::{ATTR_EVENT_ID, ATTR_EVENT_TYPE, STRING_TYPE};

/// The size AWS counts for a message: body plus, per attribute, its name, data type and value.
/// `signature_bytes` is what the hook's signature attributes add (`Signer::attribute_bytes`).
pub fn aws_message_size(
    body_len: usize,
    event_type: &str,
    event_id: &str,
    signature_bytes: usize,
) -> usize {
    body_len
        + ATTR_EVENT_TYPE.len()
        + STRING_TYPE.len()
        + event_type.len()
        + ATTR_EVENT_ID.len()
        + STRING_TYPE.len()
        + event_id.len()
        + signature_bytes
}

/// Splits items, in order, into batches of at most `max_entries` whose sizes add up to at most
/// `max_bytes`. Every item must fit `max_bytes` on its own (oversize items are dead-lettered
/// before packing).
pub fn pack<T>(
    items: Vec<T>,
    size: impl Fn(&T) -> usize,
    max_entries: usize,
    max_bytes: usize,
) -> Vec<Vec<T>> {
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let mut current_bytes = 0;
    for item in items {
        let n = size(&item);
        if !current.is_empty() && (current.len() == max_entries || current_bytes + n > max_bytes) {
            batches.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += n;
        current.push(item);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookrelay_core::limits::{AWS_MAX_BATCH_ENTRIES, AWS_MAX_MESSAGE_BYTES};

    fn pack_for_aws<T>(items: Vec<T>, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
        pack(items, size, AWS_MAX_BATCH_ENTRIES, AWS_MAX_MESSAGE_BYTES)
    }

    fn fits_aws(size: usize) -> bool {
        size <= AWS_MAX_MESSAGE_BYTES
    }

    #[test]
    fn ten_entries_per_batch() {
        let batches = pack_for_aws((0..25).collect(), |_| 100);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![10, 10, 5]
        );
        assert_eq!(
            batches.concat(),
            (0..25).collect::<Vec<_>>(),
            "order is kept"
        );
    }

    #[test]
    fn bytes_limit_splits_batches() {
        let kib = 1024;
        let batches = pack_for_aws(vec![200 * kib, 56 * kib, 1], |n| *n);
        assert_eq!(
            batches,
            vec![vec![200 * kib, 56 * kib], vec![1]],
            "exactly 256 KiB fits"
        );
        let one_big = pack_for_aws(vec![256 * kib, 1], |n| *n);
        assert_eq!(one_big.len(), 2);
    }

    #[test]
    fn size_limit_counts_attributes() {
        let overhead = aws_message_size(0, "message.new", "id-1", 81);
        assert!(fits_aws(aws_message_size(
            AWS_MAX_MESSAGE_BYTES - overhead,
            "message.new",
            "id-1",
            81
        )));
        assert!(!fits_aws(aws_message_size(
            AWS_MAX_MESSAGE_BYTES - overhead + 1,
            "message.new",
            "id-1",
            81
        )));
        assert!(!fits_aws(300 * 1024));
    }
}
