use super::*;
use k8s_openapi::api::core::v1::{Pod, Service};
use serde_json::json;

fn pod(name: &str, labels: serde_json::Value) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "ns", "labels": labels}}),
        )
        .unwrap(),
    )
}

#[test]
fn the_label_index_follows_relabels_and_deletes() {
    let cache: Arc<Cache<Pod>> = Cache::new(pod_label_index);
    cache.put(pod("a", json!({"app": "web", "tier": "x"})));
    cache.put(pod("b", json!({"app": "db"})));
    let sel = std::collections::BTreeMap::from([
        ("app".to_owned(), "web".to_owned()),
        ("tier".to_owned(), "x".to_owned()),
    ]);
    let names = |v: Vec<Arc<Pod>>| {
        v.iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(selected_pods(&cache, "ns", &sel)), ["a"]);
    assert!(selected_pods(&cache, "other", &sel).is_empty());
    // Relabelled away: the old index entry goes.
    cache.put(pod("a", json!({"app": "db"})));
    assert!(selected_pods(&cache, "ns", &sel).is_empty());
    assert_eq!(names(cache.indexed("ns/app=db")).len(), 2);
    cache.remove(&("ns".to_owned(), "b".to_owned()));
    assert_eq!(names(cache.indexed("ns/app=db")), ["a"]);
}

#[test]
fn pods_map_to_the_services_selecting_them_before_or_after() {
    let services: Arc<Cache<Service>> = Cache::new(namespace_index);
    for (name, sel) in [
        ("web", json!({"app": "web"})),
        ("db", json!({"app": "db"})),
        ("none", json!(null)),
    ] {
        let s: Service = serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "ns"}, "spec": {"selector": sel}}),
        )
        .unwrap();
        services.put(Arc::new(s));
    }
    let old = pod("p", json!({"app": "web"}));
    let new = pod("p", json!({"app": "db"}));
    let mut keys = services_of_pod(&services, Some(&old), Some(&new));
    keys.sort();
    assert_eq!(
        keys,
        [
            ("ns".to_owned(), "db".to_owned()),
            ("ns".to_owned(), "web".to_owned())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_deduplicates_and_reprocesses_keys_added_in_flight() {
    let queue = Queue::new();
    let key = ("ns".to_owned(), "a".to_owned());
    queue.add(key.clone());
    queue.add(key.clone());
    // (calls so far, the first call has finished, the second started only after it)
    let seen = Arc::new(Mutex::new((0usize, false, false)));
    let shutdown = CancellationToken::new();
    let (q, s, stop) = (queue.clone(), seen.clone(), shutdown.clone());
    let runner = tokio::spawn(queue.clone().run(
        2,
        move |_k: Key| {
            let (q, s, stop) = (q.clone(), s.clone(), stop.clone());
            async move {
                let n = {
                    let mut st = s.lock().unwrap();
                    st.0 += 1;
                    if st.0 == 2 {
                        st.2 = st.1;
                    }
                    st.0
                };
                if n == 1 {
                    // Added while in flight: processed once more afterwards, not concurrently.
                    q.add(("ns".to_owned(), "a".to_owned()));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    s.lock().unwrap().1 = true;
                } else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    stop.cancel();
                }
                None
            }
        },
        shutdown.clone(),
    ));
    tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .unwrap()
        .unwrap();
    let st = *seen.lock().unwrap();
    assert_eq!(
        st.0, 2,
        "two adds before processing are one; the in-flight add is one more"
    );
    assert!(st.2, "the second pass started only after the first ended");
}
