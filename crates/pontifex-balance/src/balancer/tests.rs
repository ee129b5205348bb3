use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::BalanceError;

fn ep(i: u8, weight: u32) -> Endpoint {
    Endpoint::new(SocketAddr::from(([10, 244, 0, i], 8080)), weight)
}

fn req_from(client: SocketAddr) -> Request {
    Request {
        client,
        destination: SocketAddr::from(([10, 96, 0, 1], 80)),
    }
}

fn client(n: u32) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::from(0x0A00_0000u32.wrapping_add(n))),
        40000,
    )
}

fn balancer(kind: SchedulerKind, eps: &[Endpoint]) -> Balancer {
    let mut b = Balancer::new(
        kind,
        SchedulerOptions {
            fallback: true,
            hash_port: false,
        },
    );
    b.set_endpoints(eps);
    b
}

fn index_of(eps: &[Endpoint], addr: SocketAddr) -> usize {
    eps.iter().position(|e| e.addr == addr).unwrap()
}

#[test]
fn names_parse_and_print() {
    for k in SchedulerKind::ALL {
        assert_eq!(k.name().parse::<SchedulerKind>().unwrap(), k);
        assert_eq!(k.to_string(), k.name());
    }
    assert_eq!(
        " wrr ".parse::<SchedulerKind>().unwrap(),
        SchedulerKind::Wrr
    );
    let err = "RR".parse::<SchedulerKind>().unwrap_err();
    assert_eq!(err, BalanceError::UnknownScheduler { name: "RR".into() });
    assert!(err.to_string().contains("expected one of rr, wrr"));
    assert!("lblc".parse::<SchedulerKind>().is_err());
}

#[test]
fn empty_balancer_picks_nothing() {
    let now = Instant::now();
    for k in SchedulerKind::ALL {
        let mut b = balancer(k, &[]);
        assert_eq!(b.pick(&req_from(client(1)), now), None, "{k}");
        b.set_endpoints(&[ep(1, 0)]);
        assert_eq!(
            b.pick(&req_from(client(1)), now),
            None,
            "{k} with only a drained endpoint"
        );
    }
}

#[test]
fn wrr_follows_ipvs_interleaving() {
    // IPVS's wrr with weights a=4, b=3, c=2: levels 4,3,2,1 → a | a b | a b c | a b c.
    let eps = [ep(1, 4), ep(2, 3), ep(3, 2)];
    let mut b = balancer(SchedulerKind::Wrr, &eps);
    let now = Instant::now();
    let seq: Vec<usize> = (0..9)
        .map(|_| index_of(&eps, b.pick(&req_from(client(1)), now).unwrap()))
        .collect();
    assert_eq!(seq, vec![0, 0, 1, 0, 1, 2, 0, 1, 2]);
}

#[test]
fn lc_uses_ipvs_overhead_weighting() {
    // One active connection outweighs 255 inactive ones.
    let eps = [ep(1, 1), ep(2, 1)];
    let mut b = balancer(SchedulerKind::Lc, &eps);
    b.counters_mut(eps[0].addr).unwrap().active = 1;
    b.counters_mut(eps[1].addr).unwrap().inactive = 255;
    assert_eq!(
        b.pick(&req_from(client(1)), Instant::now()),
        Some(eps[1].addr)
    );
    b.counters_mut(eps[1].addr).unwrap().inactive = 257;
    assert_eq!(
        b.pick(&req_from(client(1)), Instant::now()),
        Some(eps[0].addr)
    );
}

#[test]
fn nq_takes_an_idle_endpoint_even_if_slow() {
    // sed prefers the heavy endpoint even though it is busy ((1+1)/10 < (0+1)/1); nq takes the idle
    // light one.
    let eps = [ep(1, 10), ep(2, 1)];
    let mut sed = balancer(SchedulerKind::Sed, &eps);
    let mut nq = balancer(SchedulerKind::Nq, &eps);
    for b in [&mut sed, &mut nq] {
        b.counters_mut(eps[0].addr).unwrap().active = 1;
    }
    let now = Instant::now();
    assert_eq!(sed.pick(&req_from(client(1)), now), Some(eps[0].addr));
    assert_eq!(nq.pick(&req_from(client(1)), now), Some(eps[1].addr));
}

#[test]
fn rr_position_survives_updates() {
    let now = Instant::now();
    let eps = [ep(1, 1), ep(2, 1), ep(3, 1), ep(4, 1)];
    let mut b = balancer(SchedulerKind::Rr, &eps);
    assert_eq!(b.pick(&req_from(client(1)), now), Some(eps[0].addr));
    assert_eq!(b.pick(&req_from(client(1)), now), Some(eps[1].addr));
    // The last chosen (2) leaves: continue after its predecessor's successor, i.e. with 3.
    b.set_endpoints(&[eps[0], eps[2], eps[3]]);
    assert_eq!(b.pick(&req_from(client(1)), now), Some(eps[2].addr));
    // A new endpoint at the end does not restart the cycle.
    b.set_endpoints(&[eps[0], eps[2], eps[3], ep(5, 1)]);
    assert_eq!(b.pick(&req_from(client(1)), now), Some(eps[3].addr));
    assert_eq!(b.pick(&req_from(client(1)), now), Some(ep(5, 1).addr));
    assert_eq!(b.pick(&req_from(client(1)), now), Some(eps[0].addr));
}

#[test]
fn counters_of_removed_endpoints_drain_and_come_back() {
    let eps = [ep(1, 1), ep(2, 1)];
    let mut b = balancer(SchedulerKind::Lc, &eps);
    b.counters_mut(eps[1].addr).unwrap().active = 2;
    b.set_endpoints(&eps[..1]);
    assert_eq!(
        b.counters(eps[1].addr),
        Some(ConnCounters {
            active: 2,
            inactive: 0
        })
    );
    b.counters_mut(eps[1].addr).unwrap().active -= 1;
    b.set_endpoints(&eps);
    assert_eq!(b.counters(eps[1].addr).unwrap().active, 1);
    b.counters_mut(eps[1].addr).unwrap().active = 0;
    b.set_endpoints(&eps[..1]);
    assert_eq!(
        b.counters(eps[1].addr),
        None,
        "idle removed endpoints are forgotten"
    );
}

#[test]
fn sh_without_fallback_fails_like_ipvs() {
    let eps = [ep(1, 1), ep(2, 1)];
    let mut b = Balancer::new(SchedulerKind::Sh, SchedulerOptions::default());
    b.set_endpoints(&eps);
    let now = Instant::now();
    let c = req_from(client(7));
    let chosen = b.pick(&c, now).unwrap();
    assert_eq!(b.pick_avoiding(&c, now, |a| a == chosen), None);
    b.set_kind(
        SchedulerKind::Sh,
        SchedulerOptions {
            fallback: true,
            hash_port: false,
        },
    );
    let other = b.pick_avoiding(&c, now, |a| a == chosen).unwrap();
    assert_ne!(other, chosen);
}

#[test]
fn sh_table_follows_weights() {
    // weight 3 then 1: buckets a a a b a a a b ...
    let eps = [ep(1, 3), ep(2, 1)];
    let b = balancer(SchedulerKind::Sh, &eps);
    let firsts: Vec<Option<u32>> = b.table[..8].to_vec();
    assert_eq!(
        firsts,
        [0, 0, 0, 1, 0, 0, 0, 1].map(Some).to_vec(),
        "IPVS assigns weight consecutive buckets per endpoint"
    );
}

#[test]
fn affinity_sticks_slides_and_expires() {
    let eps = [ep(1, 1), ep(2, 1), ep(3, 1)];
    let mut b = balancer(SchedulerKind::Rr, &eps);
    let timeout = Duration::from_secs(10800);
    b.set_affinity(Some(timeout));
    let t0 = Instant::now();
    let c = req_from(client(1));
    let first = b.pick(&c, t0).unwrap();
    // Another client moves rr on; the first one stays stuck.
    b.pick(&req_from(client(2)), t0).unwrap();
    let t1 = t0 + timeout - Duration::from_millis(1);
    assert_eq!(b.pick(&c, t1), Some(first));
    // Sliding: the pick at t1 restarted the window.
    let t2 = t1 + timeout - Duration::from_millis(1);
    assert_eq!(b.affinity_of(c.client.ip(), t2), Some(first));
    assert_eq!(
        b.affinity_of(c.client.ip(), t1 + timeout),
        None,
        "expired exactly at the timeout"
    );
    b.expire_affinity(t1 + timeout);
    assert_eq!(b.affinity_len(), 0, "both entries expired and were swept");
}

#[test]
fn affinity_drops_drained_and_removed_endpoints() {
    let eps = [ep(1, 1), ep(2, 1)];
    let mut b = balancer(SchedulerKind::Rr, &eps);
    b.set_affinity(Some(Duration::from_secs(60)));
    let now = Instant::now();
    let c = req_from(client(1));
    let first = b.pick(&c, now).unwrap();
    let i = index_of(&eps, first);
    let mut drained = eps;
    drained[i].weight = 0;
    b.set_endpoints(&drained);
    let second = b.pick(&c, now).unwrap();
    assert_ne!(second, first);
    b.set_endpoints(&[Endpoint::new(second, 1)]);
    assert_eq!(b.pick(&c, now), Some(second));
    b.set_endpoints(&[eps[i]]);
    assert_eq!(
        b.pick(&c, now),
        Some(first),
        "removed endpoint's entry is replaced"
    );
}

#[test]
fn affinity_table_is_swept_when_it_grows() {
    let mut b = balancer(SchedulerKind::Rr, &[ep(1, 1)]);
    b.set_affinity(Some(Duration::from_secs(1)));
    let t0 = Instant::now();
    for n in 0..2000 {
        b.pick(&req_from(client(n)), t0);
    }
    let later = t0 + Duration::from_secs(2);
    for n in 10_000..11_100 {
        b.pick(&req_from(client(n)), later);
    }
    assert!(
        b.affinity_len() < 2000,
        "expired entries were swept: {}",
        b.affinity_len()
    );
}

fn weights(max_len: usize) -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(0u32..6, 1..max_len)
}

fn eps_from(ws: &[u32]) -> Vec<Endpoint> {
    ws.iter()
        .enumerate()
        .map(|(i, &w)| ep(i as u8 + 1, w))
        .collect()
}

proptest! {
    #[test]
    fn rr_cycles_exactly(ws in weights(12), rounds in 1usize..4) {
        let eps = eps_from(&ws);
        let live: Vec<usize> = (0..eps.len()).filter(|&i| ws[i] > 0).collect();
        let mut b = balancer(SchedulerKind::Rr, &eps);
        let now = Instant::now();
        for r in 0..rounds {
            for &expected in &live {
                let got = b.pick(&req_from(client(r as u32)), now).map(|a| index_of(&eps, a));
                prop_assert_eq!(got, Some(expected));
            }
        }
        if live.is_empty() {
            prop_assert_eq!(b.pick(&req_from(client(0)), now), None);
        }
    }

    #[test]
    fn wrr_proportions_equal_weights_over_a_cycle(ws in weights(8), cycles in 1u64..3) {
        let eps = eps_from(&ws);
        let g = ws.iter().fold(0u64, |g, &w| gcd(g, u64::from(w)));
        prop_assume!(g > 0);
        let cycle: u64 = ws.iter().map(|&w| u64::from(w) / g).sum();
        let mut b = balancer(SchedulerKind::Wrr, &eps);
        let mut counts = vec![0u64; eps.len()];
        let now = Instant::now();
        for _ in 0..cycle * cycles {
            let a = b.pick(&req_from(client(0)), now).unwrap();
            counts[index_of(&eps, a)] += 1;
        }
        for (i, &w) in ws.iter().enumerate() {
            prop_assert_eq!(counts[i], u64::from(w) / g * cycles, "endpoint {} weights {:?}", i, ws);
        }
    }

    #[test]
    fn least_connection_family_picks_a_least_loaded(
        ws in weights(8),
        loads in prop::collection::vec((0u32..5, 0u32..600), 8),
    ) {
        let eps = eps_from(&ws);
        let now = Instant::now();
        for kind in [SchedulerKind::Lc, SchedulerKind::Wlc, SchedulerKind::Sed, SchedulerKind::Nq] {
            let mut b = balancer(kind, &eps);
            for (e, &(a, ia)) in eps.iter().zip(&loads) {
                *b.counters_mut(e.addr).unwrap() = ConnCounters { active: a, inactive: ia };
            }
            let got = b.pick(&req_from(client(0)), now);
            let live: Vec<usize> = (0..eps.len()).filter(|&i| ws[i] > 0).collect();
            let Some(got) = got else {
                prop_assert!(live.is_empty());
                continue;
            };
            let g = index_of(&eps, got);
            prop_assert!(ws[g] > 0);
            // cost(i) = num(i) / den(i); the chosen one's cost is minimal and it is the first such.
            let cost = |i: usize| -> (u64, u64) {
                let (a, ia) = (u64::from(loads[i].0), u64::from(loads[i].1));
                let w = u64::from(ws[i]);
                match kind {
                    SchedulerKind::Lc => ((a << 8) + ia, 1),
                    SchedulerKind::Wlc => ((a << 8) + ia, w),
                    _ => (a + 1, w),
                }
            };
            if kind == SchedulerKind::Nq && let Some(&idle) = live.iter().find(|&&i| loads[i].0 == 0) {
                prop_assert_eq!(g, idle);
                continue;
            }
            let (gn, gd) = cost(g);
            for &i in &live {
                let (n, d) = cost(i);
                prop_assert!(gn * d <= n * gd, "{} chose {} over cheaper {}", kind, g, i);
                if gn * d == n * gd {
                    prop_assert!(g <= i, "{} tie not broken by list order", kind);
                }
            }
        }
    }

    #[test]
    fn hashing_is_deterministic_and_spreads(ws in prop::collection::vec(1u32..4, 2..6)) {
        let eps = eps_from(&ws);
        let now = Instant::now();
        for kind in [SchedulerKind::Sh, SchedulerKind::Mh, SchedulerKind::Dh] {
            let mut b = balancer(kind, &eps);
            let mut twin = balancer(kind, &eps);
            let mut seen = vec![0u32; eps.len()];
            for n in 0..2000u32 {
                let r = if kind == SchedulerKind::Dh {
                    Request {
                        client: client(1),
                        destination: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0A60_0000 + n)), 80),
                    }
                } else {
                    req_from(client(n * 7919))
                };
                let a = b.pick(&r, now).unwrap();
                prop_assert_eq!(b.pick(&r, now), Some(a), "{} same key, same endpoint", kind);
                prop_assert_eq!(twin.pick(&r, now), Some(a), "{} same table in another replica", kind);
                seen[index_of(&eps, a)] += 1;
            }
            for (i, &s) in seen.iter().enumerate() {
                prop_assert!(s > 0, "{} never chose endpoint {} of {:?}", kind, i, ws);
            }
        }
    }

    #[test]
    fn maglev_moves_few_keys_when_an_endpoint_goes(n in 3usize..12, gone_pick in 0usize..12) {
        let eps: Vec<Endpoint> = (0..n).map(|i| ep(i as u8 + 1, 1)).collect();
        let gone = gone_pick % n;
        let mut before = balancer(SchedulerKind::Mh, &eps);
        let rest: Vec<Endpoint> = eps.iter().copied().enumerate().filter(|&(i, _)| i != gone).map(|(_, e)| e).collect();
        let mut after = balancer(SchedulerKind::Mh, &rest);
        let now = Instant::now();
        let keys = 5000u32;
        let (mut moved_other, mut on_gone) = (0u32, 0u32);
        for k in 0..keys {
            let r = req_from(client(k.wrapping_mul(2_654_435_761)));
            let a = before.pick(&r, now).unwrap();
            let b = after.pick(&r, now).unwrap();
            if a == eps[gone].addr {
                on_gone += 1;
            } else if a != b {
                moved_other += 1;
            }
        }
        let share = f64::from(on_gone) / f64::from(keys);
        prop_assert!((share - 1.0 / n as f64).abs() < 0.06, "removed endpoint held {share}");
        // Maglev is not perfectly minimal: a few percent of other keys may move.
        let churn = f64::from(moved_other) / f64::from(keys);
        prop_assert!(churn < 0.08, "{} keys of surviving endpoints moved ({churn})", moved_other);
    }

    #[test]
    fn maglev_drain_moves_only_the_drained_keys(n in 2usize..10, drained in 0usize..10) {
        let eps: Vec<Endpoint> = (0..n).map(|i| ep(i as u8 + 1, 1)).collect();
        let drained = drained % n;
        let mut b = balancer(SchedulerKind::Mh, &eps);
        let now = Instant::now();
        let before: Vec<SocketAddr> = (0..1000).map(|k| b.pick(&req_from(client(k * 31)), now).unwrap()).collect();
        let mut w = eps.clone();
        w[drained].weight = 0;
        b.set_endpoints(&w);
        for (k, &a) in before.iter().enumerate() {
            let now_a = b.pick(&req_from(client(k as u32 * 31)), now).unwrap();
            prop_assert_ne!(now_a, eps[drained].addr);
            if a != eps[drained].addr {
                prop_assert_eq!(now_a, a, "a key of a surviving endpoint moved");
            }
        }
    }

    #[test]
    fn weight_zero_is_never_picked(ws in weights(8), picks in 1usize..50, loads in prop::collection::vec(0u32..3, 8)) {
        let eps = eps_from(&ws);
        let now = Instant::now();
        for kind in SchedulerKind::ALL {
            let mut b = balancer(kind, &eps);
            for (e, &l) in eps.iter().zip(&loads) {
                b.counters_mut(e.addr).unwrap().active = l;
            }
            for p in 0..picks {
                let r = Request { client: client(p as u32 * 977), destination: SocketAddr::from(([10, 96, 0, p as u8], 80)) };
                if let Some(a) = b.pick(&r, now) {
                    prop_assert!(ws[index_of(&eps, a)] > 0, "{} picked a drained endpoint", kind);
                } else {
                    prop_assert!(ws.iter().all(|&w| w == 0), "{} found nothing among {:?}", kind, ws);
                }
            }
        }
    }

    #[test]
    fn affinity_holds_within_timeout_for_every_scheduler(
        kind_i in 0usize..9, secs in 1u64..20000, clients in 1u32..20,
    ) {
        let kind = SchedulerKind::ALL[kind_i];
        let eps = eps_from(&[1, 2, 3]);
        let mut b = balancer(kind, &eps);
        let timeout = Duration::from_secs(secs);
        b.set_affinity(Some(timeout));
        let t0 = Instant::now();
        let mut stuck = HashMap::new();
        for c in 0..clients {
            stuck.insert(c, b.pick(&req_from(client(c)), t0).unwrap());
        }
        // Load changes so that non-sticky schedulers would choose differently.
        for e in &eps {
            b.counters_mut(e.addr).unwrap().active += 3;
        }
        let later = t0 + timeout - Duration::from_nanos(1);
        for c in 0..clients {
            prop_assert_eq!(b.pick(&req_from(client(c)), later), Some(stuck[&c]));
        }
        let expired = later + timeout;
        for c in 0..clients {
            prop_assert_eq!(b.affinity_of(client(c).ip(), expired), None);
        }
    }
}
