//! Leader election on the Lease `kube-system/pontifex-controllers`, as client-go's `leaderelection`
//! does it, so several controller processes can run with one acting.
//!
//! The decision ([`decide`], [`lost`]) is pure; [`acquire`] and [`hold`] read and write the Lease.
//! A candidate takes the Lease when it does not exist, when it holds it already (a renewal), or when
//! the holder's `renewTime` is older than `leaseDurationSeconds` (a take-over, counted in
//! `leaseTransitions`). Writes carry the `resourceVersion` read, so of two candidates racing for an
//! expired Lease only one wins; the other gets 409 and waits. Unlike client-go, expiry is judged on
//! the Lease's `renewTime` rather than on when this process last saw the record change; that trusts
//! the candidates' clocks to agree, which holds for processes on one machine.
//!
//! The leader renews every retry period; if no renewal succeeds within the renew deadline, it has
//! lost the Lease ([`hold`] returns [`Error::LeadershipLost`]) and the controllers stop, as
//! kube-controller-manager exits. Not done: releasing the Lease on a clean shutdown.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

use crate::{Context, Error};

pub(crate) const NAMESPACE: &str = "kube-system";
pub(crate) const NAME: &str = "pontifex-controllers";

/// The fields of a Lease leader election reads and writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) holder: Option<String>,
    pub(crate) lease_duration_seconds: i32,
    pub(crate) acquire_time: Option<Timestamp>,
    pub(crate) renew_time: Option<Timestamp>,
    pub(crate) transitions: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// No Lease yet: create it, holding it.
    Create(Record),
    /// Renew our Lease, or take over an expired one: write this record.
    Update(Record),
    /// Someone else holds a live Lease: try again after the retry period.
    Wait,
}

/// What to do with the Lease as it is now (`None`: it does not exist).
pub(crate) fn decide(
    now: Timestamp,
    current: Option<&Record>,
    identity: &str,
    lease_duration: Duration,
) -> Decision {
    let seconds = i32::try_from(lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
    let Some(cur) = current else {
        return Decision::Create(Record {
            holder: Some(identity.to_owned()),
            lease_duration_seconds: seconds,
            acquire_time: Some(now),
            renew_time: Some(now),
            transitions: 0,
        });
    };
    let holder = cur.holder.as_deref().unwrap_or("");
    if holder == identity {
        return Decision::Update(Record {
            holder: Some(identity.to_owned()),
            lease_duration_seconds: seconds,
            acquire_time: cur.acquire_time.or(Some(now)),
            renew_time: Some(now),
            transitions: cur.transitions,
        });
    }
    let expired = cur.renew_time.is_none_or(|t| {
        t + SignedDuration::from_secs(i64::from(cur.lease_duration_seconds)) <= now
    });
    if !holder.is_empty() && !expired {
        return Decision::Wait;
    }
    Decision::Update(Record {
        holder: Some(identity.to_owned()),
        lease_duration_seconds: seconds,
        acquire_time: Some(now),
        renew_time: Some(now),
        // An empty holder is a released Lease: taking it is still a transition, as in client-go.
        transitions: cur.transitions + 1,
    })
}

/// Whether a leader whose last successful renewal was at `last_renewed` has lost the Lease.
pub(crate) fn lost(now: Timestamp, last_renewed: Timestamp, renew_deadline: Duration) -> bool {
    now.duration_since(last_renewed)
        > SignedDuration::try_from(renew_deadline).unwrap_or(SignedDuration::MAX)
}

fn record(lease: &Lease) -> Record {
    let spec = lease.spec.clone().unwrap_or_default();
    Record {
        holder: spec.holder_identity,
        lease_duration_seconds: spec.lease_duration_seconds.unwrap_or(0),
        acquire_time: spec.acquire_time.map(|t| t.0),
        renew_time: spec.renew_time.map(|t| t.0),
        transitions: spec.lease_transitions.unwrap_or(0),
    }
}

fn spec(r: Record, old: Option<LeaseSpec>) -> LeaseSpec {
    LeaseSpec {
        holder_identity: r.holder,
        lease_duration_seconds: Some(r.lease_duration_seconds),
        acquire_time: r.acquire_time.map(MicroTime),
        renew_time: r.renew_time.map(MicroTime),
        lease_transitions: Some(r.transitions),
        ..old.unwrap_or_default()
    }
}

/// One attempt: `Ok(true)` when we hold the Lease afterwards.
async fn try_acquire_or_renew(ctx: &Context) -> Result<bool, Error> {
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    let current = api.get_opt(NAME).await?;
    let c = &ctx.config;
    let decision = decide(
        Timestamp::now(),
        current.as_ref().map(record).as_ref(),
        &c.identity,
        c.leader_elect_lease_duration,
    );
    let result = match decision {
        Decision::Wait => return Ok(false),
        Decision::Create(r) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(NAME.to_owned()),
                    namespace: Some(NAMESPACE.to_owned()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec(r, None)),
            };
            api.create(&PostParams::default(), &lease).await
        }
        Decision::Update(r) => {
            let mut lease = current.expect("an update follows a read Lease");
            lease.spec = Some(spec(r, lease.spec.take()));
            // `lease` carries the resourceVersion read: a concurrent writer makes this a 409.
            api.replace(NAME, &PostParams::default(), &lease).await
        }
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Wait until this process holds the Lease. `Ok(false)` when `shutdown` came first.
pub(crate) async fn acquire(ctx: &Context, shutdown: &CancellationToken) -> Result<bool, Error> {
    tracing::info!(identity = %ctx.config.identity, "attempting to acquire leader lease {NAMESPACE}/{NAME}");
    loop {
        let attempt = tokio::time::timeout(
            ctx.config.leader_elect_renew_deadline,
            try_acquire_or_renew(ctx),
        );
        match attempt.await {
            Ok(Ok(true)) => {
                tracing::info!(identity = %ctx.config.identity, "successfully acquired lease {NAMESPACE}/{NAME}");
                return Ok(true);
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::info!(error = %e, "error retrieving or updating the leader lease")
            }
            Err(_) => tracing::info!("leader lease request timed out"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(false),
            () = tokio::time::sleep(ctx.config.leader_elect_retry_period) => {}
        }
    }
}

/// Keep renewing the Lease until `shutdown` (`Ok`) or until it is lost (`Err(LeadershipLost)`).
pub(crate) async fn hold(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    let c = &ctx.config;
    let mut last_renewed = Timestamp::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(c.leader_elect_retry_period) => {}
        }
        let attempt =
            tokio::time::timeout(c.leader_elect_renew_deadline, try_acquire_or_renew(&ctx));
        match attempt.await {
            Ok(Ok(true)) => last_renewed = Timestamp::now(),
            Ok(Ok(false)) => tracing::warn!("the leader lease is held by someone else"),
            Ok(Err(e)) => tracing::warn!(error = %e, "failed to renew the leader lease"),
            Err(_) => tracing::warn!("leader lease renewal timed out"),
        }
        if lost(
            Timestamp::now(),
            last_renewed,
            c.leader_elect_renew_deadline,
        ) {
            tracing::error!(identity = %c.identity, "leaderelection lost");
            return Err(Error::LeadershipLost);
        }
    }
}

#[cfg(test)]
mod tests;
