use chrono::{DateTime, TimeDelta, Utc};

/// A policy's timing, in the units the schedule needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    pub interval: TimeDelta,
    /// Offsets before the due time at which a warning fires, longest first, each shorter than the
    /// interval.
    pub warn_before: Vec<TimeDelta>,
    /// How long a due rotation may wait for its new version before it has failed.
    pub rotation_timeout: TimeDelta,
}

impl Timing {
    /// Sorts the warnings longest first, drops duplicates, zero offsets and offsets not shorter
    /// than the interval (they would fall before the cycle starts).
    pub fn new(interval: TimeDelta, mut warn_before: Vec<TimeDelta>, rotation_timeout: TimeDelta) -> Timing {
        warn_before.retain(|w| *w > TimeDelta::zero() && *w < interval);
        warn_before.sort_by(|a, b| b.cmp(a));
        warn_before.dedup();
        Timing { interval, warn_before, rotation_timeout }
    }

    fn warnings(&self) -> u32 {
        u32::try_from(self.warn_before.len()).unwrap_or(u32::MAX)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for `next_rotation_at` (and its warnings).
    Scheduled,
    /// `rotation.due` has fired; the next version completes the rotation.
    Due,
    /// Nobody rotated in time, or the `rotation.due` notifications could not be delivered; stays so
    /// until the next write or forced rotation.
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Scheduled => "scheduled",
            State::Due => "due",
            State::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        match s {
            "scheduled" => Some(State::Scheduled),
            "due" => Some(State::Due),
            "failed" => Some(State::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// No new version arrived within `rotation_timeout`.
    Timeout,
    /// The `rotation.due` deliveries exhausted their retries.
    Undelivered,
}

impl FailReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Timeout => "rotation_timeout",
            FailReason::Undelivered => "notification_undelivered",
        }
    }
}

/// What a transition announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fire {
    /// `rotation.due` with `due_now: false`.
    Warning,
    /// `rotation.due` with `due_now: true`.
    Due,
    /// `rotation.failed`.
    Failed(FailReason),
}

/// The schedule of one assigned secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub state: State,
    pub next_rotation_at: DateTime<Utc>,
    /// How many of the cycle's warnings (longest first) are behind us.
    pub warned: u32,
    pub due_since: Option<DateTime<Utc>>,
    pub last_rotated_at: Option<DateTime<Utc>>,
}

impl Assignment {
    /// A fresh schedule: due one interval from now.
    pub fn new(timing: &Timing, now: DateTime<Utc>) -> Assignment {
        Assignment::cycle(timing, now, None)
    }

    /// A cycle starting at `now`: warnings whose time has already passed are not fired.
    fn cycle(timing: &Timing, now: DateTime<Utc>, last_rotated_at: Option<DateTime<Utc>>) -> Assignment {
        let next = now + timing.interval;
        let warned = timing.warn_before.iter().take_while(|w| next - **w <= now).count();
        Assignment {
            state: State::Scheduled,
            next_rotation_at: next,
            warned: u32::try_from(warned).unwrap_or(u32::MAX),
            due_since: None,
            last_rotated_at,
        }
    }

    fn next_warning(&self, timing: &Timing) -> Option<DateTime<Utc>> {
        let w = timing.warn_before.get(usize::try_from(self.warned).ok()?)?;
        Some(self.next_rotation_at - *w)
    }

    /// When the scheduler next has something to do for this secret; `None` while failed.
    pub fn wake_at(&self, timing: &Timing) -> Option<DateTime<Utc>> {
        match self.state {
            State::Scheduled => Some(self.next_warning(timing).unwrap_or(self.next_rotation_at)),
            State::Due => Some(self.due_since.unwrap_or(self.next_rotation_at) + timing.rotation_timeout),
            State::Failed => None,
        }
    }

    /// The one transition due at `now`, if any. A scheduler applies it (conditionally) and asks
    /// again, so a long pause catches up one step at a time; warnings skipped over by the pause
    /// collapse into one.
    pub fn tick(&self, timing: &Timing, now: DateTime<Utc>) -> Option<(Assignment, Fire)> {
        match self.state {
            State::Scheduled if now >= self.next_rotation_at => Some((
                Assignment {
                    state: State::Due,
                    warned: timing.warnings(),
                    due_since: Some(now),
                    ..self.clone()
                },
                Fire::Due,
            )),
            State::Scheduled => {
                let first = self.next_warning(timing)?;
                if now < first {
                    return None;
                }
                let passed = timing.warn_before.iter().filter(|w| self.next_rotation_at - **w <= now).count();
                Some((
                    Assignment { warned: u32::try_from(passed).unwrap_or(u32::MAX), ..self.clone() },
                    Fire::Warning,
                ))
            }
            State::Due => {
                let deadline = self.due_since.unwrap_or(self.next_rotation_at) + timing.rotation_timeout;
                (now >= deadline).then(|| {
                    (Assignment { state: State::Failed, ..self.clone() }, Fire::Failed(FailReason::Timeout))
                })
            }
            State::Failed => None,
        }
    }

    /// A forced rotation: due now, whatever the state (the event fires again even if already due).
    pub fn force(&self, timing: &Timing, now: DateTime<Utc>) -> (Assignment, Fire) {
        (
            Assignment { state: State::Due, warned: timing.warnings(), due_since: Some(now), ..self.clone() },
            Fire::Due,
        )
    }

    /// A new version arrived: a due or failed rotation is complete and the next cycle starts now.
    /// `None` when no rotation was waiting (a write between rotations changes no schedule).
    pub fn complete(&self, timing: &Timing, now: DateTime<Utc>) -> Option<Assignment> {
        matches!(self.state, State::Due | State::Failed).then(|| Assignment::cycle(timing, now, Some(now)))
    }

    /// The `rotation.due` notifications could not be delivered.
    pub fn undelivered(&self) -> Option<(Assignment, Fire)> {
        (self.state == State::Due).then(|| {
            (Assignment { state: State::Failed, ..self.clone() }, Fire::Failed(FailReason::Undelivered))
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn day(d: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("t") + TimeDelta::days(d)
    }

    fn timing() -> Timing {
        Timing::new(TimeDelta::days(90), vec![TimeDelta::days(1), TimeDelta::days(7)], TimeDelta::hours(24))
    }

    /// Runs the scheduler every hour for `days`, completing each due rotation at once (as
    /// `auto_generate` does); returns what fired and when.
    fn simulate(days: i64, complete: bool) -> Vec<(i64, Fire)> {
        let t = timing();
        let mut a = Assignment::new(&t, day(0));
        let mut fired = Vec::new();
        for hour in 0..=days * 24 {
            let now = day(0) + TimeDelta::hours(hour);
            while let Some(wake) = a.wake_at(&t) {
                if wake > now {
                    break;
                }
                let Some((next, fire)) = a.tick(&t, now) else { break };
                fired.push((hour, fire));
                a = next;
                if complete && fire == Fire::Due {
                    a = a.complete(&t, now).expect("due completes");
                }
            }
        }
        fired
    }

    #[test]
    fn two_hundred_days_of_a_90_day_policy() {
        let h = |d: i64| d * 24;
        assert_eq!(
            simulate(200, true),
            [
                (h(83), Fire::Warning),
                (h(89), Fire::Warning),
                (h(90), Fire::Due),
                (h(173), Fire::Warning),
                (h(179), Fire::Warning),
                (h(180), Fire::Due),
            ]
        );
        // Nobody rotates: due, then failed a day later, then silence.
        assert_eq!(
            simulate(200, false),
            [
                (h(83), Fire::Warning),
                (h(89), Fire::Warning),
                (h(90), Fire::Due),
                (h(91), Fire::Failed(FailReason::Timeout))
            ]
        );
    }

    #[test]
    fn a_long_pause_collapses_missed_warnings() {
        let t = timing();
        let a = Assignment::new(&t, day(0));
        let (a, fire) = a.tick(&t, day(89) + TimeDelta::hours(1)).expect("warning");
        assert_eq!((fire, a.warned), (Fire::Warning, 2));
        assert_eq!(a.wake_at(&t), Some(day(90)));
        assert!(a.tick(&t, day(89) + TimeDelta::hours(2)).is_none());
    }

    #[test]
    fn forcing_completing_and_failing() {
        let t = timing();
        let a = Assignment::new(&t, day(0));
        assert!(a.complete(&t, day(1)).is_none(), "a write between rotations changes nothing");
        assert!(a.undelivered().is_none());
        let (due, fire) = a.force(&t, day(10));
        assert_eq!((due.state, fire, due.wake_at(&t)), (State::Due, Fire::Due, Some(day(11))));
        let (failed, fire) = due.undelivered().expect("fails");
        assert_eq!(
            (failed.state, fire, failed.wake_at(&t)),
            (State::Failed, Fire::Failed(FailReason::Undelivered), None)
        );
        let next = failed.complete(&t, day(12)).expect("a write completes a failed rotation");
        assert_eq!(
            (next.state, next.next_rotation_at, next.last_rotated_at),
            (State::Scheduled, day(102), Some(day(12)))
        );
        assert_eq!(next.wake_at(&t), Some(day(95)));
    }

    #[test]
    fn warnings_longer_than_the_interval_are_dropped() {
        let t = Timing::new(
            TimeDelta::days(7),
            vec![TimeDelta::days(7), TimeDelta::days(30), TimeDelta::days(1)],
            TimeDelta::hours(1),
        );
        assert_eq!(t.warn_before, [TimeDelta::days(1)]);
    }
}
