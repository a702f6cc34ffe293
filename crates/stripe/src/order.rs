//! Versions for events: an older snapshot of an object must never replace a
//! newer one.
//!
//! Event ids are not ordered, and many events share a second. An event's
//! version is its `created` second × 2³² plus its rank among the events of
//! that second, counted from the oldest; the list's order within the second
//! gives the rank. Stripe lists newest first (localstripe oldest first), so
//! the direction is read from the list itself: the first two seconds it
//! shows tell it.
//!
//! Ranks are stable enough across reads: an event that shows up late only
//! pushes the ranks of the newer events of its second up, so the newest
//! event of an object in any read has a version at least that of the newest
//! the destination holds from an earlier read.

use simplyload_core::version;

/// The order a list of events comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    NewestFirst,
    OldestFirst,
}

impl Direction {
    /// What the list's first two distinct `created` values say, if they differ.
    pub fn from_pair(first: i64, then: i64) -> Option<Direction> {
        match then.cmp(&first) {
            std::cmp::Ordering::Less => Some(Direction::NewestFirst),
            std::cmp::Ordering::Greater => Some(Direction::OldestFirst),
            std::cmp::Ordering::Equal => None,
        }
    }
}

/// What the events of one second say about the list's order: an object's
/// `*.created` event comes before its other events, its `*.deleted` event
/// after them.
pub fn from_lifecycle(events: &[serde_json::Value]) -> Option<Direction> {
    let object_id = |e: &serde_json::Value| e.pointer("/data/object/id").and_then(|v| v.as_str()).map(str::to_owned);
    let kind = |e: &serde_json::Value| e.get("type").and_then(|v| v.as_str()).unwrap_or("").to_owned();
    for (i, a) in events.iter().enumerate() {
        let Some(id) = object_id(a) else { continue };
        for b in events.iter().skip(i + 1) {
            if object_id(b).as_deref() != Some(id.as_str()) {
                continue;
            }
            // a is listed before b.
            let (ka, kb) = (kind(a), kind(b));
            if ka.ends_with(".created") && !kb.ends_with(".created")
                || kb.ends_with(".deleted") && !ka.ends_with(".deleted")
            {
                return Some(Direction::OldestFirst);
            }
            if kb.ends_with(".created") && !ka.ends_with(".created")
                || ka.ends_with(".deleted") && !kb.ends_with(".deleted")
            {
                return Some(Direction::NewestFirst);
            }
        }
    }
    None
}

/// The version of the event at `index` (list order) among `count` events
/// created in the second `created`.
pub fn event_version(created: i64, index: usize, count: usize, direction: Direction) -> i128 {
    let rank = match direction {
        Direction::OldestFirst => index,
        Direction::NewestFirst => count - 1 - index,
    };
    version::version(created.max(0) as u64, rank as u32)
}

/// The version rows read at a feed start taken at `second` get: every event
/// of that second or later wins over them.
pub fn start_version(second: i64) -> i128 {
    version::version(second.max(0) as u64, 0)
}

/// The version of a window that ends with `second`: past every event in it.
pub fn end_version(second: i64) -> i128 {
    version::version(second.max(0) as u64, u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_a_second_the_list_decides_and_seconds_decide_over_it() {
        // Newest first: the first listed is the newest.
        let a = event_version(100, 0, 3, Direction::NewestFirst);
        let b = event_version(100, 2, 3, Direction::NewestFirst);
        assert!(a > b);
        let c = event_version(100, 0, 3, Direction::OldestFirst);
        let d = event_version(100, 2, 3, Direction::OldestFirst);
        assert!(d > c);
        assert!(event_version(101, 0, 1, Direction::NewestFirst) > a);
        assert!(start_version(100) <= b && end_version(100) > a && end_version(100) < start_version(101));
        assert_eq!(Direction::from_pair(5, 4), Some(Direction::NewestFirst));
        assert_eq!(Direction::from_pair(5, 5), None);
    }

    #[test]
    fn an_objects_lifecycle_tells_the_order_within_a_second() {
        let e = |t: &str, id: &str| serde_json::json!({"type": t, "data": {"object": {"id": id}}});
        let oldest_first = [e("customer.created", "a"), e("customer.created", "b"), e("customer.updated", "a")];
        assert_eq!(from_lifecycle(&oldest_first), Some(Direction::OldestFirst));
        let newest_first = [e("customer.deleted", "b"), e("customer.updated", "a"), e("customer.updated", "b")];
        assert_eq!(from_lifecycle(&newest_first), Some(Direction::NewestFirst));
        assert_eq!(from_lifecycle(&[e("customer.updated", "a"), e("customer.updated", "a")]), None);
    }

    #[test]
    fn a_late_event_never_lets_an_older_one_win() {
        // Read 1 saw e1 then e2 (second 7, oldest first); e2 is stored.
        let stored = event_version(7, 1, 2, Direction::OldestFirst);
        // Read 2 sees a late e0 before them: e1 now has e2's old rank, but
        // the newest of the object in this read (e2) is ahead of it.
        let e1 = event_version(7, 1, 3, Direction::OldestFirst);
        let e2 = event_version(7, 2, 3, Direction::OldestFirst);
        assert!(e2 >= stored && e2 > e1);
    }
}
