//! kubectl's typed-client commands, which send their request bodies only as Kubernetes protobuf
//! (`application/vnd.kubernetes.protobuf`): `kubectl create namespace|configmap|secret|service|
//! deployment|ingress` and `kubectl run`, with every kubectl version in `KUBECTL_VERSIONS`. Each object
//! is read back with `kubectl get -o json` and checked field by field, including the zero values the
//! decoder must keep (`replicas: 0`, an empty ConfigMap value) and the ones it must drop.

use std::path::Path;

use serde_json::{Value, json};
use test_support::{KUBECTL_VERSIONS, Kubectl, TestServer};

struct Cluster {
    server: TestServer,
    k: Kubectl,
    version: &'static str,
}

impl Cluster {
    fn start(version: &'static str) -> Self {
        let server = TestServer::start(Path::new(env!("CARGO_BIN_EXE_pontifex")), &[])
            .expect("starting pontifex");
        let k = server.kubectl(version).expect("kubectl");
        Cluster { server, k, version }
    }

    fn ok(&self, args: &[&str]) -> String {
        let run = self.k.run(args);
        assert!(
            run.success,
            "kubectl {} {}: failed\nstdout:\n{}\nstderr:\n{}\nserver log:\n{}",
            self.version,
            args.join(" "),
            run.stdout,
            run.stderr,
            self.server.log()
        );
        run.stdout
    }

    /// `kubectl get <what> -o json`, parsed.
    fn get(&self, what: &[&str]) -> Value {
        let mut args = vec!["get"];
        args.extend(what);
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&args)).expect("kubectl printed JSON")
    }
}

fn each_version(f: impl Fn(&Cluster)) {
    for version in KUBECTL_VERSIONS {
        f(&Cluster::start(version));
    }
}

#[test]
fn create_namespace_configmap_and_secrets() {
    let tls = tempfile::tempdir().expect("tempdir");
    let certified = rcgen::generate_simple_self_signed(vec!["foo.com".to_owned()]).expect("cert");
    let cert_pem = certified.cert.pem();
    let cert = tls.path().join("tls.crt");
    let key = tls.path().join("tls.key");
    std::fs::write(&cert, &cert_pem).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");

    each_version(|c| {
        assert_eq!(
            c.ok(&["create", "namespace", "demo"]),
            "namespace/demo created\n"
        );
        let ns = c.get(&["namespace", "demo"]);
        assert_eq!(ns["metadata"]["name"], "demo");
        assert!(ns["metadata"].get("namespace").is_none(), "{ns}");

        c.ok(&[
            "create",
            "configmap",
            "c",
            "--from-literal=k=v",
            "--from-literal=e=",
        ]);
        let cm = c.get(&["configmap", "c"]);
        assert_eq!(cm["data"], json!({"k": "v", "e": ""}), "{cm}");
        assert_eq!(cm["metadata"]["namespace"], "default");
        assert!(cm.get("immutable").is_none(), "{cm}");
        assert!(cm["metadata"].get("generateName").is_none(), "{cm}");

        c.ok(&[
            "create",
            "configmap",
            "c2",
            "-n",
            "demo",
            "--from-literal=x=1",
        ]);
        assert_eq!(
            c.get(&["configmap", "c2", "-n", "demo"])["data"],
            json!({"x": "1"})
        );

        c.ok(&["create", "secret", "generic", "s", "--from-literal=a=b"]);
        let s = c.get(&["secret", "s"]);
        assert_eq!(s["data"], json!({"a": "Yg=="}), "{s}");
        assert_eq!(s["type"], "Opaque");

        c.ok(&[
            "create",
            "secret",
            "tls",
            "t",
            &format!("--cert={}", cert.display()),
            &format!("--key={}", key.display()),
        ]);
        let t = c.get(&["secret", "t"]);
        assert_eq!(t["type"], "kubernetes.io/tls");
        let crt = c.ok(&["get", "secret", "t", "-o", "jsonpath={.data.tls\\.crt}"]);
        assert_eq!(base64_decode(&crt), cert_pem.as_bytes(), "{t}");

        c.ok(&[
            "create",
            "secret",
            "docker-registry",
            "d",
            "--docker-server=registry.test",
            "--docker-username=u",
            "--docker-password=p",
        ]);
        let d = c.get(&["secret", "d"]);
        assert_eq!(d["type"], "kubernetes.io/dockerconfigjson");
        let config = base64_decode(d["data"][".dockerconfigjson"].as_str().expect("data"));
        let config: Value = serde_json::from_slice(&config).expect("docker config JSON");
        assert_eq!(config["auths"]["registry.test"]["username"], "u");

        // Server-side dry run: the object is decoded and validated, and not stored.
        let dry = c.ok(&[
            "create",
            "configmap",
            "dry",
            "--from-literal=a=b",
            "--dry-run=server",
            "-o",
            "json",
        ]);
        let dry: Value = serde_json::from_str(&dry).expect("JSON");
        assert_eq!(dry["data"], json!({"a": "b"}));
        assert!(!c.k.run(&["get", "configmap", "dry"]).success);
    });
}

#[test]
fn create_services() {
    each_version(|c| {
        assert_eq!(
            c.ok(&["create", "service", "nodeport", "np", "--tcp=80:8080"]),
            "service/np created\n"
        );
        let np = c.get(&["service", "np"]);
        assert_eq!(np["spec"]["type"], "NodePort");
        assert_eq!(np["spec"]["selector"], json!({"app": "np"}));
        let port = &np["spec"]["ports"][0];
        assert_eq!(port["name"], "80-8080", "{np}");
        assert_eq!(port["port"], 80);
        assert_eq!(port["targetPort"], 8080);
        assert_eq!(port["protocol"], "TCP");
        let node_port = port["nodePort"].as_u64().expect("allocated nodePort");
        assert!((30000..=32767).contains(&node_port), "{np}");

        c.ok(&[
            "create",
            "service",
            "nodeport",
            "fixed",
            "--tcp=81:http",
            "--node-port=30123",
        ]);
        let fixed = c.get(&["service", "fixed"]);
        assert_eq!(fixed["spec"]["ports"][0]["nodePort"], 30123);
        assert_eq!(fixed["spec"]["ports"][0]["targetPort"], "http");

        c.ok(&["create", "service", "clusterip", "cip", "--tcp=5678:8080"]);
        let cip = c.get(&["service", "cip"]);
        assert_eq!(cip["spec"]["type"], "ClusterIP");
        assert!(
            cip["spec"]["clusterIP"]
                .as_str()
                .is_some_and(|ip| ip.starts_with("10.")),
            "{cip}"
        );

        c.ok(&[
            "create",
            "service",
            "clusterip",
            "headless",
            "--clusterip=None",
        ]);
        assert_eq!(c.get(&["service", "headless"])["spec"]["clusterIP"], "None");

        c.ok(&["create", "service", "loadbalancer", "lb", "--tcp=5678:8080"]);
        assert_eq!(c.get(&["service", "lb"])["spec"]["type"], "LoadBalancer");

        c.ok(&[
            "create",
            "service",
            "externalname",
            "en",
            "--external-name=bar.example.com",
        ]);
        let en = c.get(&["service", "en"]);
        assert_eq!(en["spec"]["type"], "ExternalName");
        assert_eq!(en["spec"]["externalName"], "bar.example.com");
        assert!(en["spec"].get("clusterIP").is_none(), "{en}");

        let dry = c.ok(&[
            "create",
            "service",
            "clusterip",
            "dry",
            "--tcp=80",
            "--dry-run=server",
            "-o",
            "json",
        ]);
        let dry: Value = serde_json::from_str(&dry).expect("JSON");
        assert_eq!(dry["spec"]["ports"][0]["port"], 80);
        assert!(!c.k.run(&["get", "service", "dry"]).success);
    });
}

#[test]
fn create_deployment_pod_and_ingress() {
    each_version(|c| {
        assert_eq!(
            c.ok(&[
                "create",
                "deployment",
                "web",
                "--image=nginx:1.19",
                "--replicas=3",
                "--port=80"
            ]),
            "deployment.apps/web created\n"
        );
        let web = c.get(&["deployment", "web"]);
        assert_eq!(web["spec"]["replicas"], 3);
        assert_eq!(
            web["spec"]["selector"],
            json!({"matchLabels": {"app": "web"}})
        );
        let template = &web["spec"]["template"];
        assert_eq!(template["metadata"]["labels"], json!({"app": "web"}));
        let container = &template["spec"]["containers"][0];
        assert_eq!(container["name"], "nginx", "{web}");
        assert_eq!(container["image"], "nginx:1.19");
        assert_eq!(container["ports"][0]["containerPort"], 80);
        assert!(web["metadata"]["creationTimestamp"].is_string(), "{web}");

        // replicas is a pointer field: an explicit 0 is kept, not defaulted to 1.
        c.ok(&[
            "create",
            "deployment",
            "zero",
            "--image=nginx",
            "--replicas=0",
        ]);
        assert_eq!(c.get(&["deployment", "zero"])["spec"]["replicas"], 0);

        assert_eq!(
            c.ok(&[
                "run",
                "pod1",
                "--image=nginx",
                "--port=80",
                "--env=MODE=prod",
                "--labels=tier=web"
            ]),
            "pod/pod1 created\n"
        );
        let pod = c.get(&["pod", "pod1"]);
        assert_eq!(pod["metadata"]["labels"], json!({"tier": "web"}));
        let container = &pod["spec"]["containers"][0];
        assert_eq!(container["name"], "pod1");
        assert_eq!(container["image"], "nginx");
        assert_eq!(container["ports"][0]["containerPort"], 80);
        assert_eq!(container["env"], json!([{"name": "MODE", "value": "prod"}]));
        assert!(container.get("stdin").is_none(), "{pod}");

        assert_eq!(
            c.ok(&["create", "ingress", "ing", "--rule=foo.com/bar=svc1:8080"]),
            "ingress.networking.k8s.io/ing created\n"
        );
        let ing = c.get(&["ingress", "ing"]);
        let rule = &ing["spec"]["rules"][0];
        assert_eq!(rule["host"], "foo.com", "{ing}");
        let path = &rule["http"]["paths"][0];
        assert_eq!(path["path"], "/bar");
        assert_eq!(path["pathType"], "Exact");
        assert_eq!(
            path["backend"],
            json!({"service": {"name": "svc1", "port": {"number": 8080}}})
        );

        let dry = c.ok(&[
            "create",
            "deployment",
            "dry",
            "--image=nginx",
            "--dry-run=server",
            "-o",
            "json",
        ]);
        let dry: Value = serde_json::from_str(&dry).expect("JSON");
        assert_eq!(
            dry["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx"
        );
        assert!(!c.k.run(&["get", "deployment", "dry"]).success);
    });
}

/// Standard base64 with padding (the test needs no dependency for this).
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {s:?}"),
    };
    let digits: Vec<u8> = s.bytes().filter(|&c| c != b'=').map(value).collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | (u32::from(*d) << (18 - 6 * i)));
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
