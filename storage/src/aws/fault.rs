//! Client-side fault injection for the AWS backends.
//!
//! The emulators never throttle, never fail single records of a `PutRecords` and never leave
//! `UnprocessedItems`, so the code paths that handle those would go untested. A [`FaultPlan`]
//! sits in every [`super::AwsClients`] and is consulted by each per-operation function before it
//! calls the service: a scripted fault either fails the whole call (as the service would, before
//! anything is written) or withholds some entries of a batch call, which are then reported back
//! exactly as the service reports unprocessed entries — and, as with the real service, are not
//! written. An empty plan costs one uncontended lock per call.
//!
//! Invariant: an injected fault never lets the caller believe something was written that was not
//! (or the reverse), so tests that use it check real retry behaviour, not a simulation of it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// The AWS operations the backends call, named as in the API references.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    CreateStream,
    DeleteStream,
    DescribeStreamSummary,
    ListShards,
    PutRecords,
    GetShardIterator,
    GetRecords,
    CreateTable,
    DeleteTable,
    DescribeTable,
    DescribeTimeToLive,
    UpdateTimeToLive,
    GetItem,
    BatchGetItem,
    Query,
    Scan,
    BatchWriteItem,
    UpdateItem,
    TransactWriteItems,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::CreateStream => "CreateStream",
            Operation::DeleteStream => "DeleteStream",
            Operation::DescribeStreamSummary => "DescribeStreamSummary",
            Operation::ListShards => "ListShards",
            Operation::PutRecords => "PutRecords",
            Operation::GetShardIterator => "GetShardIterator",
            Operation::GetRecords => "GetRecords",
            Operation::CreateTable => "CreateTable",
            Operation::DeleteTable => "DeleteTable",
            Operation::DescribeTable => "DescribeTable",
            Operation::DescribeTimeToLive => "DescribeTimeToLive",
            Operation::UpdateTimeToLive => "UpdateTimeToLive",
            Operation::GetItem => "GetItem",
            Operation::BatchGetItem => "BatchGetItem",
            Operation::Query => "Query",
            Operation::Scan => "Scan",
            Operation::BatchWriteItem => "BatchWriteItem",
            Operation::UpdateItem => "UpdateItem",
            Operation::TransactWriteItems => "TransactWriteItems",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One scripted fault, consumed by one call of its operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The call fails as throttled (`ProvisionedThroughputExceededException` /
    /// `ThrottlingException`); nothing is written.
    Throttle,
    /// The call fails as the service being briefly away (HTTP 503); nothing is written.
    Unavailable,
    /// The call fails with a non-retryable validation error; nothing is written.
    Reject,
    /// Batch calls only (`PutRecords`, `BatchWriteItem`, `BatchGetItem`): the entries at these
    /// indices of the request are not processed and come back as failed (`PutRecords`, with
    /// `ProvisionedThroughputExceededException`) or unprocessed (`UnprocessedItems`,
    /// `UnprocessedKeys`). On other operations it is ignored.
    WithholdEntries(Vec<usize>),
}

/// What the per-operation function must do for this call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Injected {
    /// Fail the call with this fault (one of the call-level variants).
    Fail(Fault),
    /// Send only the entries not in this set; report these as failed / unprocessed.
    Withhold(Vec<usize>),
}

/// The faults scripted per operation, consumed in order, and a count of calls per operation.
#[derive(Debug, Default)]
pub struct FaultPlan {
    state: Mutex<PlanState>,
}

#[derive(Debug, Default)]
struct PlanState {
    scripted: HashMap<Operation, VecDeque<Fault>>,
    calls: HashMap<Operation, u64>,
}

impl FaultPlan {
    /// The next `times` calls of `operation` meet `fault` (after any faults already scripted).
    pub fn inject(&self, operation: Operation, fault: Fault, times: usize) {
        let mut state = self.lock();
        let queue = state.scripted.entry(operation).or_default();
        queue.extend(std::iter::repeat_n(fault, times));
    }

    /// Drops every scripted fault not yet consumed.
    pub fn clear(&self) {
        self.lock().scripted.clear();
    }

    /// How many calls of `operation` were attempted (faulted or not) since the plan was made.
    pub fn calls(&self, operation: Operation) -> u64 {
        self.lock().calls.get(&operation).copied().unwrap_or(0)
    }

    /// How many scripted faults of `operation` are still waiting.
    pub fn pending(&self, operation: Operation) -> usize {
        self.lock()
            .scripted
            .get(&operation)
            .map_or(0, VecDeque::len)
    }

    /// Counts the call and takes its scripted fault, if any.
    pub(crate) fn before_call(&self, operation: Operation) -> Option<Injected> {
        let mut state = self.lock();
        *state.calls.entry(operation).or_default() += 1;
        let fault = state.scripted.get_mut(&operation)?.pop_front()?;
        Some(match fault {
            Fault::WithholdEntries(indices) => Injected::Withhold(indices),
            other => Injected::Fail(other),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PlanState> {
        // The state is plain counters and queues; a panic elsewhere cannot leave it inconsistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_consumed_in_order_per_operation() {
        let plan = FaultPlan::default();
        plan.inject(Operation::PutRecords, Fault::Throttle, 2);
        plan.inject(Operation::PutRecords, Fault::WithholdEntries(vec![1]), 1);
        assert_eq!(plan.before_call(Operation::GetRecords), None);
        assert_eq!(
            plan.before_call(Operation::PutRecords),
            Some(Injected::Fail(Fault::Throttle))
        );
        assert_eq!(plan.pending(Operation::PutRecords), 2);
        assert_eq!(
            plan.before_call(Operation::PutRecords),
            Some(Injected::Fail(Fault::Throttle))
        );
        assert_eq!(
            plan.before_call(Operation::PutRecords),
            Some(Injected::Withhold(vec![1]))
        );
        assert_eq!(plan.before_call(Operation::PutRecords), None);
        assert_eq!(plan.calls(Operation::PutRecords), 4);
        assert_eq!(plan.calls(Operation::GetRecords), 1);
    }
}
