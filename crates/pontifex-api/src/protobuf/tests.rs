use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

/// A tiny protobuf encoder for building test bodies by hand.
#[derive(Default, Clone)]
struct Enc(Vec<u8>);

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

impl Enc {
    fn new() -> Self {
        Enc::default()
    }

    fn key(mut self, tag: u32, wt: u8) -> Self {
        varint(&mut self.0, (u64::from(tag) << 3) | u64::from(wt));
        self
    }

    /// A varint field (int32, int64, bool).
    fn int(self, tag: u32, v: i64) -> Self {
        let mut e = self.key(tag, 0);
        varint(&mut e.0, v as u64);
        e
    }

    fn bytes(self, tag: u32, b: &[u8]) -> Self {
        let mut e = self.key(tag, 2);
        varint(&mut e.0, b.len() as u64);
        e.0.extend_from_slice(b);
        e
    }

    fn str(self, tag: u32, s: &str) -> Self {
        self.bytes(tag, s.as_bytes())
    }

    fn msg(self, tag: u32, m: Enc) -> Self {
        self.bytes(tag, &m.0)
    }

    /// A `map<string, string>` (or bytes) entry.
    fn entry(self, tag: u32, k: &str, v: &[u8]) -> Self {
        self.msg(tag, Enc::new().str(1, k).bytes(2, v))
    }
}

/// magic + runtime.Unknown around `raw`.
fn envelope(api_version: &str, kind: &str, raw: Enc) -> Vec<u8> {
    let unknown = Enc::new()
        .msg(1, Enc::new().str(1, api_version).str(2, kind))
        .msg(2, raw)
        .str(3, "")
        .str(4, "");
    let mut out = MAGIC.to_vec();
    out.extend(unknown.0);
    out
}

/// ObjectMeta as Go's encoder writes it: every non-pointer scalar, zero or not.
fn meta(name: &str) -> Enc {
    Enc::new()
        .str(1, name)
        .str(2, "")
        .str(3, "")
        .str(4, "")
        .str(5, "")
        .str(6, "")
        .int(7, 0)
}

#[test]
fn captured_kubectl_configmap() {
    // `kubectl create cm a` (1.33). The capture we were given stopped 2 bytes short of the lengths it
    // declares (raw 0x13, metadata 0x11): the missing tail is `B\x00` (creationTimestamp, an empty
    // Time), then the envelope's empty contentEncoding and contentType.
    let body = b"k8s\x00\n\x0f\n\x02v1\x12\tConfigMap\x12\x13\n\x11\n\x01a\x12\x00\x1a\x00\"\x00*\x002\x008\x00B\x00\x1a\x00\"\x00";
    let v = decode(body).unwrap();
    assert_eq!(
        serde_json::to_string(&v).unwrap(),
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#
    );
}

#[test]
fn configmap_keeps_empty_values_and_pointer_false() {
    let raw = Enc::new()
        .msg(1, meta("c").entry(11, "app", b"web"))
        .entry(2, "k", b"v")
        .entry(2, "e", b"")
        .entry(3, "bin", b"\x00\xff")
        .int(4, 0);
    let v = decode(&envelope("v1", "ConfigMap", raw)).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"app": "web"}},
            "data": {"k": "v", "e": ""},
            "binaryData": {"bin": "AP8="},
            "immutable": false,
        })
    );
}

#[test]
fn secret_bytes_become_base64() {
    let raw = Enc::new()
        .msg(1, meta("s"))
        .entry(2, "a", b"b")
        .entry(2, "tls.crt", b"hello world")
        .entry(2, "empty", b"")
        .str(3, "Opaque");
    let v = decode(&envelope("v1", "Secret", raw)).unwrap();
    assert_eq!(
        v["data"],
        json!({"a": "Yg==", "tls.crt": "aGVsbG8gd29ybGQ=", "empty": ""})
    );
    assert_eq!(v["type"], "Opaque");
    assert!(v.get("immutable").is_none());
}

#[test]
fn service_ports_int_or_string_and_zero_node_port() {
    let port = |name: &str, port: i64, target: Enc, node_port: i64| {
        Enc::new()
            .str(1, name)
            .str(2, "TCP")
            .int(3, port)
            .msg(4, target)
            .int(5, node_port)
    };
    let spec = Enc::new()
        .msg(
            1,
            port(
                "web",
                80,
                Enc::new().int(1, 0).int(2, 8080).str(3, ""),
                30080,
            ),
        )
        .msg(
            1,
            port("alt", 81, Enc::new().int(1, 1).int(2, 0).str(3, "http"), 0),
        )
        .msg(
            1,
            port("", 82, Enc::new().int(1, 0).int(2, 0).str(3, ""), 0),
        )
        .entry(2, "app", b"web")
        .str(3, "")
        .str(4, "NodePort")
        .str(7, "")
        .str(10, "")
        .str(11, "Cluster")
        .int(12, 0)
        .int(13, 0);
    let raw = Enc::new()
        .msg(1, meta("np"))
        .msg(2, spec)
        .msg(3, Enc::new());
    let v = decode(&envelope("v1", "Service", raw)).unwrap();
    assert_eq!(
        v["spec"],
        json!({
            "ports": [
                {"name": "web", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080},
                {"name": "alt", "protocol": "TCP", "port": 81, "targetPort": "http"},
                {"protocol": "TCP", "port": 82},
            ],
            "selector": {"app": "web"},
            "type": "NodePort",
            "externalTrafficPolicy": "Cluster",
        })
    );
    assert_eq!(v["status"], json!({}));
}

#[test]
fn deployment_replicas_zero_template_and_times() {
    let container = Enc::new()
        .str(1, "nginx")
        .str(2, "nginx:1.19")
        .msg(
            6,
            Enc::new()
                .str(1, "")
                .int(2, 0)
                .int(3, 80)
                .str(4, "TCP")
                .str(5, ""),
        )
        .msg(7, Enc::new().str(1, "MODE").str(2, "prod"))
        .msg(7, Enc::new().str(1, "EMPTY").str(2, ""))
        .msg(8, Enc::new())
        .str(13, "")
        .str(14, "IfNotPresent")
        .int(16, 0)
        .int(17, 0)
        .int(18, 0);
    let pod_spec = Enc::new()
        .msg(2, container)
        .str(3, "Always")
        .str(6, "")
        .int(11, 0);
    let template = Enc::new()
        .msg(1, Enc::new().entry(11, "app", b"web").msg(8, Enc::new()))
        .msg(2, pod_spec);
    let spec = Enc::new()
        .int(1, 0)
        .msg(2, Enc::new().entry(1, "app", b"web"))
        .msg(3, template)
        .msg(
            4,
            Enc::new()
                .str(1, "RollingUpdate")
                .msg(2, Enc::new().msg(2, Enc::new().int(1, 1).str(3, "25%"))),
        )
        .int(5, 0)
        .int(7, 0);
    let metadata = meta("web")
        .msg(8, Enc::new().int(1, 1_700_000_000).int(2, 0))
        .msg(9, Enc::new());
    let raw = Enc::new().msg(1, metadata).msg(2, spec);
    let v = decode(&envelope("apps/v1", "Deployment", raw)).unwrap();
    assert_eq!(v["apiVersion"], "apps/v1");
    assert_eq!(v["kind"], "Deployment");
    assert_eq!(
        v["metadata"],
        json!({"name": "web", "creationTimestamp": "2023-11-14T22:13:20Z"})
    );
    assert_eq!(
        v["spec"],
        json!({
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "nginx",
                        "image": "nginx:1.19",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "env": [{"name": "MODE", "value": "prod"}, {"name": "EMPTY"}],
                        "resources": {},
                        "imagePullPolicy": "IfNotPresent",
                    }],
                    "restartPolicy": "Always",
                },
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
        })
    );
}

#[test]
fn deployment_without_replicas_has_none() {
    let raw = Enc::new().msg(1, meta("web")).msg(2, Enc::new().int(5, 0));
    let v = decode(&envelope("apps/v1", "Deployment", raw)).unwrap();
    assert_eq!(v["spec"], json!({}));
}

#[test]
fn namespace_and_inline_messages() {
    let raw = Enc::new()
        .msg(1, meta("demo"))
        .msg(2, Enc::new().str(1, "kubernetes"))
        .msg(3, Enc::new().str(1, ""));
    let v = decode(&envelope("v1", "Namespace", raw)).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "demo"},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {},
        })
    );

    // Probe.handler and Volume.volumeSource are Go embedded structs: inlined in JSON.
    let probe = Enc::new()
        .msg(
            1,
            Enc::new().msg(
                2,
                Enc::new()
                    .str(1, "/healthz")
                    .msg(2, Enc::new().int(1, 1).str(3, "http")),
            ),
        )
        .int(2, 5);
    let volume = Enc::new().str(1, "cfg").msg(
        2,
        Enc::new().msg(19, Enc::new().msg(1, Enc::new().str(1, "c"))),
    );
    let pod_spec = Enc::new()
        .msg(1, volume)
        .msg(2, Enc::new().str(1, "c").msg(10, probe));
    let raw = Enc::new().msg(1, meta("p")).msg(2, pod_spec);
    let v = decode(&envelope("v1", "Pod", raw)).unwrap();
    assert_eq!(
        v["spec"],
        json!({
            "volumes": [{"name": "cfg", "configMap": {"name": "c"}}],
            "containers": [{
                "name": "c",
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "initialDelaySeconds": 5},
            }],
        })
    );
}

#[test]
fn micro_time_duration_and_raw_extension() {
    let raw = Enc::new()
        .msg(1, meta("e"))
        .msg(2, Enc::new().str(1, "Pod").str(3, "p"))
        .str(3, "Started")
        .msg(10, Enc::new().int(1, 1_700_000_000).int(2, 123_456_789))
        .int(8, 3);
    let v = decode(&envelope("v1", "Event", raw)).unwrap();
    assert_eq!(v["eventTime"], "2023-11-14T22:13:20.123456Z");
    assert_eq!(v["count"], 3);
    assert_eq!(v["involvedObject"], json!({"kind": "Pod", "name": "p"}));

    assert_eq!(go_duration(0), "0s");
    assert_eq!(go_duration(1_500_000), "1.5ms");
    assert_eq!(go_duration(999), "999ns");
    assert_eq!(go_duration(2_000), "2µs");
    assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
    assert_eq!(go_duration(3_723_500_000_000), "1h2m3.5s");
    assert_eq!(go_duration(-90_000_000_000), "-1m30s");

    let mut p = Path::default();
    assert_eq!(
        raw_json(&Enc::new().bytes(1, br#"{"a":1}"#).0, &p).unwrap(),
        (json!({"a": 1}), false)
    );
    assert_eq!(raw_json(&[], &p).unwrap(), (Value::Null, true));
    assert!(matches!(
        raw_json(&Enc::new().bytes(1, b"{").0, &p),
        Err(ProtobufError::InvalidValue { .. })
    ));
    p.push("x");
    assert_eq!(
        time(&Enc::new().int(1, -62_135_596_800).0, false, &p).unwrap(),
        (Value::Null, true)
    );
}

#[test]
fn base64_matches_the_standard_alphabet() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
}

#[test]
fn errors() {
    assert_eq!(decode(b"{}"), Err(ProtobufError::MissingMagic));
    assert!(matches!(
        decode(&envelope("v1", "Widget", Enc::new())),
        Err(ProtobufError::UnknownKind { .. })
    ));
    // Truncated: the ConfigMap claims more bytes than there are.
    let mut body = envelope("v1", "ConfigMap", Enc::new().msg(1, meta("a")));
    body.truncate(body.len() - 6);
    assert!(matches!(
        decode(&body),
        Err(ProtobufError::Truncated { .. })
    ));
    // metadata.name as a varint.
    let err = decode(&envelope(
        "v1",
        "ConfigMap",
        Enc::new().msg(1, Enc::new().int(1, 5)),
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "wrong wire type 0 for field ConfigMap.metadata.name (expected 2)"
    );
    let err = decode(&envelope(
        "v1",
        "ConfigMap",
        Enc::new().msg(1, Enc::new().bytes(1, b"\xff")),
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid UTF-8 in string field ConfigMap.metadata.name"
    );
    let mut enc = Enc::new().msg(1, meta("a"));
    enc.0.extend([0x0b]); // field 1, wire type 3 (start group)
    assert!(matches!(
        decode(&envelope("v1", "ConfigMap", enc)),
        Err(ProtobufError::InvalidKey { wire_type: 3, .. })
    ));
    let gzip = {
        let mut out = MAGIC.to_vec();
        out.extend(
            Enc::new()
                .msg(1, Enc::new().str(1, "v1").str(2, "ConfigMap"))
                .str(3, "gzip")
                .0,
        );
        out
    };
    assert_eq!(
        decode(&gzip),
        Err(ProtobufError::UnsupportedEncoding("gzip".into()))
    );
}

#[test]
fn unknown_fields_are_skipped() {
    let raw = Enc::new()
        .msg(1, meta("a").int(999, 7).bytes(998, b"xyz"))
        .entry(2, "k", b"v")
        .int(77, 1);
    let v = decode(&envelope("v1", "ConfigMap", raw)).unwrap();
    assert_eq!(v["metadata"], json!({"name": "a"}));
    assert_eq!(v["data"], json!({"k": "v"}));
}

#[test]
fn media_type() {
    assert!(is_protobuf_media_type(
        "application/vnd.kubernetes.protobuf"
    ));
    assert!(is_protobuf_media_type(
        "application/vnd.kubernetes.protobuf; charset=x"
    ));
    assert!(!is_protobuf_media_type("application/json"));
    assert!(is_protobuf_media_type(
        "Application/VND.Kubernetes.Protobuf"
    ));
}

#[test]
fn schema_is_consistent() {
    let names: Vec<&str> = schema::MESSAGES.iter().map(|(n, _)| *n).collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "MESSAGES sorted");
    for (name, fields) in schema::MESSAGES {
        assert!(
            fields.windows(2).all(|w| w[0].tag < w[1].tag),
            "{name}: fields sorted by tag"
        );
        for f in *fields {
            if let Kind::Message(m) | Kind::MapMessage(m) = f.kind {
                assert!(
                    names.binary_search(&m).is_ok() || is_special(m),
                    "{name}.{}: {m} not in the schema",
                    f.json
                );
            }
        }
    }
    for r in crate::registry::RESOURCES {
        assert!(
            schema::ROOTS
                .iter()
                .any(|(v, k, _)| *v == r.api_version() && *k == r.kind),
            "{} has no protobuf root",
            r.kind
        );
    }
    // Spot checks of the zero-value rule.
    let field = |m: &str, j: &str| {
        fields_of(m)
            .iter()
            .find(|f| f.json == j)
            .copied()
            .unwrap_or_else(|| panic!("{m}.{j}"))
    };
    assert!(field("io.k8s.api.apps.v1.DeploymentSpec", "replicas").keep_zero);
    assert!(field("io.k8s.api.core.v1.PodSpec", "automountServiceAccountToken").keep_zero);
    assert!(field("io.k8s.api.core.v1.ServicePort", "port").keep_zero);
    assert!(!field("io.k8s.api.core.v1.ServicePort", "nodePort").keep_zero);
    assert!(
        !field(
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "namespace"
        )
        .keep_zero
    );
}

fn is_special(name: &str) -> bool {
    generate::SPECIAL.contains(&name)
}

#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/gen_proto_schema/generate.rs"]
mod generate;

/// The committed `schema.rs` is what the generator makes from k8s-pb's sources, when they are unpacked
/// in the cargo registry (skipped otherwise: see `examples/gen_proto_schema/main.rs`).
#[test]
fn schema_is_fresh() {
    let Some(src) = generate::find_k8s_pb_src("0.9.0") else {
        eprintln!("k8s-pb 0.9.0 sources not found; skipping the staleness check");
        return;
    };
    let docs: Vec<Value> = crate::openapi::documents()
        .iter()
        .map(|d| serde_json::from_slice(d.json()).unwrap())
        .collect();
    let generated = generate::generate(&src, &docs).unwrap();
    let committed = include_str!("schema.rs");
    assert!(
        generated == committed,
        "src/protobuf/schema.rs is stale: run `cargo run -p pontifex-api --example gen_proto_schema`"
    );
}

/// Wrap `raw` for one of a few kinds, so random bytes reach the message decoder.
fn kinds() -> impl Strategy<Value = (&'static str, &'static str)> {
    prop::sample::select(vec![
        ("v1", "ConfigMap"),
        ("v1", "Pod"),
        ("v1", "Service"),
        ("apps/v1", "Deployment"),
        ("v1", "Event"),
        ("networking.k8s.io/v1", "Ingress"),
    ])
}

proptest! {
    #[test]
    fn random_bodies_do_not_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&body);
        let mut with_magic = MAGIC.to_vec();
        with_magic.extend(&body);
        let _ = decode(&with_magic);
    }

    #[test]
    fn random_objects_do_not_panic(
        (api_version, kind) in kinds(),
        raw in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut body = MAGIC.to_vec();
        body.extend(Enc::new().msg(1, Enc::new().str(1, api_version).str(2, kind)).bytes(2, &raw).0);
        let _ = decode(&body);
    }

    /// Random well-formed field sequences nested three deep, so decoding goes past the first key.
    #[test]
    fn random_wellformed_messages_do_not_panic(
        (api_version, kind) in kinds(),
        fields in prop::collection::vec((1u32..40, 0u8..3, any::<u64>(), prop::collection::vec(any::<u8>(), 0..24)), 0..24),
    ) {
        let mut inner = Enc::new();
        for (tag, wt, n, bytes) in &fields {
            inner = match wt {
                0 => inner.int(*tag, *n as i64),
                1 => { let mut e = inner.key(*tag, 1); e.0.extend(n.to_le_bytes()); e }
                _ => inner.bytes(*tag, bytes),
            };
        }
        let mid = Enc::new().msg(1, inner.clone()).msg(2, inner.clone()).msg(3, inner.clone()).msg(4, inner);
        let raw = Enc::new().msg(1, mid.clone()).msg(2, mid.clone()).msg(3, mid);
        let _ = decode(&envelope(api_version, kind, raw));
    }
}
