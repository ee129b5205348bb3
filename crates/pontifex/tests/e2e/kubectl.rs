//! The real kubectl (every version in `KUBECTL_VERSIONS`) against the real `pontifex apiserver`.
//!
//! Each test runs its scenario once per kubectl version, each version with its own discovery cache and
//! its own server (a server starts in a fraction of a second, and the examples use fixed names, fixed
//! namespaces and a fixed node port, so two versions cannot share one cluster). The assertions read
//! kubectl's output the way a person would: table columns, describe lines, error messages word for word.
//!
//! `kubectl create service|deployment|...` and `kubectl run` (whose typed clients send protobuf request
//! bodies) are covered in `protobuf.rs`.

use std::io::{BufRead as _, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::Ipv4Net;
use serde_json::Value;
use test_support::{KUBECTL_VERSIONS, Kubectl, Run, TestServer, eventually, examples_dir};

/// One server and one kubectl of one version pointed at it.
struct Cluster {
    server: TestServer,
    k: Kubectl,
    version: &'static str,
}

impl Cluster {
    fn start(version: &'static str, extra: &[&str]) -> Self {
        let server = TestServer::start(Path::new(env!("CARGO_BIN_EXE_pontifex")), extra)
            .expect("starting pontifex");
        let k = server.kubectl(version).expect("kubectl");
        Cluster { server, k, version }
    }

    /// Run kubectl; panics with the server log if it does not succeed.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.k.run(args);
        self.check(args, run, true).stdout
    }

    /// Run kubectl; panics if it succeeds. Returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let run = self.k.run(args);
        self.check(args, run, false).stderr
    }

    /// `kubectl <args> -f -` with `yaml` on stdin.
    fn stdin(&self, args: &[&str], yaml: &str, success: bool) -> Run {
        let mut all = args.to_vec();
        all.extend(["-f", "-"]);
        let run = self.k.run_stdin(&all, yaml);
        self.check(&all, run, success)
    }

    fn check(&self, args: &[&str], run: Run, success: bool) -> Run {
        assert_eq!(
            run.success,
            success,
            "kubectl {} {}: expected {}\nstdout:\n{}\nstderr:\n{}\nserver log:\n{}",
            self.version,
            args.join(" "),
            if success { "success" } else { "failure" },
            run.stdout,
            run.stderr,
            self.server.log()
        );
        run
    }
}

/// Run `f` once per kubectl version, each on a fresh server started with `extra` flags.
fn each_version(extra: &[&str], f: impl Fn(&Cluster)) {
    for version in KUBECTL_VERSIONS {
        f(&Cluster::start(version, extra));
    }
}

fn example(name: &str) -> String {
    examples_dir().join(name).to_string_lossy().into_owned()
}

/// The whitespace-separated columns of each line of a table.
fn table(out: &str) -> Vec<Vec<&str>> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect()
}

/// The row whose column `col` is `name`.
fn row<'a>(out: &'a str, col: usize, name: &str) -> Vec<&'a str> {
    table(out)
        .into_iter()
        .find(|r| r.get(col) == Some(&name))
        .unwrap_or_else(|| panic!("no row {name:?} in column {col}:\n{out}"))
}

/// kubectl's AGE: one or two `<number><unit>` groups, as `0s`, `42s`, `3m12s`, `5h`.
fn is_age(s: &str) -> bool {
    let mut groups = 0;
    let mut digits = 0;
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits += 1;
        } else if "smhdy".contains(c) && digits > 0 {
            groups += 1;
            digits = 0;
        } else {
            return false;
        }
    }
    digits == 0 && (1..=2).contains(&groups)
}

/// An address of the default service cluster IP range.
fn is_cluster_ip(s: &str) -> bool {
    let range: Ipv4Net = "10.96.0.0/12".parse().expect("range");
    s.parse::<Ipv4Addr>().is_ok_and(|ip| range.contains(&ip))
}

/// The value of a `describe` line `Key:   value` (the first one with that key).
fn described<'a>(out: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}:");
    out.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key:?} line in:\n{out}"))
}

const TABLE_HEADER: [&str; 6] = [
    "NAME",
    "TYPE",
    "CLUSTER-IP",
    "EXTERNAL-IP",
    "PORT(S)",
    "AGE",
];

#[test]
fn examples_apply_and_read_back() {
    each_version(&[], |c| {
        // 1. Every example but the one that pins an address outside the default range is accepted.
        let expected: &[(&str, &[&str])] = &[
            (
                "external-ips.yaml",
                &["service/my-service-external-ip created"],
            ),
            ("externalname.yaml", &["service/my-service created"]),
            ("headless.yaml", &["service/service-test created"]),
            (
                "ingress-fanout.yaml",
                &["ingress.networking.k8s.io/mywebsite created"],
            ),
            (
                "ingress-foo-bar.yaml",
                &["ingress.networking.k8s.io/ingress-nginx created"],
            ),
            (
                "ingress-tls.yaml",
                &["ingress.networking.k8s.io/mywebsite-tls created"],
            ),
            ("loadbalancer.yaml", &["service/example-service created"]),
            ("my-nginx-two-ports.yaml", &["service/my-nginx created"]),
            (
                "networkpolicy-and-or.yaml",
                &[
                    "networkpolicy.networking.k8s.io/allow-alice-clients-and created",
                    "networkpolicy.networking.k8s.io/allow-alice-or-clients created",
                ],
            ),
            (
                "nginx-nodeport.yaml",
                &["service/nginx created", "deployment.apps/nginx created"],
            ),
            (
                "selectorless-manual-endpoints.yaml",
                &[
                    "service/service-test created",
                    "endpoints/service-test created",
                ],
            ),
            ("svc-1-nodeport.yaml", &["service/svc-1 created"]),
        ];
        let mut listed: Vec<String> = std::fs::read_dir(examples_dir())
            .expect("examples/")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml") && n != "kube-dns-fixed-ip.yaml")
            .collect();
        listed.sort();
        assert_eq!(
            listed,
            expected
                .iter()
                .map(|(f, _)| (*f).to_owned())
                .collect::<Vec<_>>(),
            "examples/ changed"
        );
        for (file, lines) in expected {
            let out = c.ok(&["apply", "-f", &example(file)]);
            assert_eq!(out.lines().collect::<Vec<_>>(), *lines, "{file}");
        }

        // 3. get svc: exactly the six columns, and the NodePort row as a person reads it.
        let out = c.ok(&["get", "svc"]);
        assert_eq!(table(&out)[0], TABLE_HEADER);
        let nginx = row(&out, 0, "nginx");
        assert_eq!(nginx.len(), 6, "{out}");
        assert_eq!(nginx[1], "NodePort");
        assert!(is_cluster_ip(nginx[2]), "{out}");
        assert_eq!(nginx[3..5], ["<none>", "80:30002/TCP"]);
        assert!(is_age(nginx[5]), "{out}");
        let two = row(&out, 0, "my-nginx");
        let (http, https) = two[4].split_once(',').expect("two ports");
        assert!(
            http.starts_with("8080:") && http.ends_with("/TCP") && https.starts_with("443:"),
            "{out}"
        );
        assert_eq!(
            row(&out, 0, "my-service")[1..5],
            [
                "ExternalName",
                "<none>",
                "my.database.example.com",
                "<none>"
            ]
        );
        assert_eq!(
            row(&out, 0, "service-test")[1..5],
            ["ClusterIP", "None", "<none>", "4330/TCP"]
        );
        assert_eq!(
            row(&out, 0, "my-service-external-ip")[3..5],
            ["172.31.255.10", "80/TCP"]
        );
        let lb = row(&out, 0, "example-service");
        assert_eq!(lb[1..4], ["LoadBalancer", lb[2], "<pending>"]);
        assert!(
            lb[4].starts_with("8765:") && lb[4].ends_with("/TCP"),
            "{out}"
        );
        assert_eq!(
            row(&out, 0, "kubernetes")[1..5],
            ["ClusterIP", "10.96.0.1", "<none>", "443/TCP"]
        );

        let wide = c.ok(&["get", "svc", "-o", "wide"]);
        assert_eq!(table(&wide)[0], [&TABLE_HEADER[..], &["SELECTOR"]].concat());
        assert_eq!(row(&wide, 0, "nginx")[6], "app=nginx");
        assert_eq!(row(&wide, 0, "kubernetes")[6], "<none>");

        let all = c.ok(&["get", "svc", "-A"]);
        assert_eq!(table(&all)[0], [&["NAMESPACE"][..], &TABLE_HEADER].concat());
        assert_eq!(row(&all, 1, "nginx")[0], "default");
        let test_rows: Vec<_> = table(&all)
            .into_iter()
            .filter(|r| r[1] == "service-test")
            .collect();
        assert_eq!(test_rows.len(), 2, "{all}");
        assert!(
            test_rows
                .iter()
                .any(|r| r[0] == "kube-system" && is_cluster_ip(r[3])),
            "{all}"
        );
        assert!(
            test_rows
                .iter()
                .any(|r| r[0] == "default" && r[3] == "None"),
            "{all}"
        );

        let labels = c.ok(&["get", "svc", "--show-labels"]);
        assert_eq!(table(&labels)[0].last(), Some(&"LABELS"));
        assert_eq!(row(&labels, 0, "my-nginx").last(), Some(&"run=my-nginx"));
        assert_eq!(
            row(&labels, 0, "kubernetes").last(),
            Some(&"component=apiserver,provider=kubernetes")
        );
        assert_eq!(row(&labels, 0, "example-service").last(), Some(&"<none>"));

        let selected = c.ok(&["get", "svc", "-l", "app=nginx"]);
        let names: Vec<&str> = table(&selected).iter().skip(1).map(|r| r[0]).collect();
        assert_eq!(names, ["nginx"], "{selected}");
        assert_eq!(c.ok(&["get", "svc", "-l", "app=nope"]), "");

        // -o yaml / -o json: typed, versioned, and defaulted the way the real API server defaults.
        let yaml = c.ok(&["get", "svc", "nginx", "-o", "yaml"]);
        for line in [
            "apiVersion: v1",
            "kind: Service",
            "  ipFamilyPolicy: SingleStack",
            "  sessionAffinity: None",
            "  internalTrafficPolicy: Cluster",
            "  externalTrafficPolicy: Cluster",
            "  type: NodePort",
            "    protocol: TCP",
            "    targetPort: 80",
            "    nodePort: 30002",
        ] {
            // A list item's first field sits behind its dash: `  - nodePort: 30002`.
            assert!(
                yaml.lines()
                    .any(|l| l.replacen("- ", "  ", 1) == line || l == line),
                "no {line:?} in:\n{yaml}"
            );
        }
        assert!(yaml.contains("  ipFamilies:\n  - IPv4\n"), "{yaml}");
        let rv = yaml
            .lines()
            .find_map(|l| l.strip_prefix("  resourceVersion: "))
            .expect("resourceVersion");
        assert!(rv.trim_matches('"').parse::<u64>().is_ok(), "{rv}");
        let ip = yaml
            .lines()
            .find_map(|l| l.strip_prefix("  clusterIP: "))
            .expect("clusterIP");
        assert!(is_cluster_ip(ip), "{ip}");

        let json: Value =
            serde_json::from_str(&c.ok(&["get", "svc", "my-nginx", "-o", "json"])).expect("JSON");
        assert_eq!(json["apiVersion"], "v1");
        assert_eq!(json["kind"], "Service");
        assert!(
            json["metadata"]["resourceVersion"]
                .as_str()
                .is_some_and(|s| s.parse::<u64>().is_ok()),
            "{json}"
        );
        let spec = &json["spec"];
        assert!(
            is_cluster_ip(spec["clusterIP"].as_str().unwrap_or("")),
            "{spec}"
        );
        assert_eq!(spec["clusterIPs"], serde_json::json!([spec["clusterIP"]]));
        assert_eq!(spec["ipFamilies"], serde_json::json!(["IPv4"]));
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        // The port without a targetPort gets its port number; both keep their names.
        let ports = spec["ports"].as_array().expect("ports");
        assert_eq!(ports[0]["name"], "http");
        assert_eq!(ports[0]["targetPort"], 80);
        assert_eq!(ports[1]["name"], "https");
        assert_eq!(ports[1]["targetPort"], 443);
        assert!(
            ports
                .iter()
                .all(|p| p["protocol"] == "TCP" && p["nodePort"].as_u64().is_some()),
            "{spec}"
        );

        // The hand-written Endpoints of the selector-less Service.
        let ep = c.ok(&["get", "endpoints", "-n", "kube-system"]);
        assert_eq!(table(&ep)[0], ["NAME", "ENDPOINTS", "AGE"]);
        assert_eq!(row(&ep, 0, "service-test")[1], "10.1.21.32:6180");

        let deploy = c.ok(&["get", "deploy"]);
        assert_eq!(
            table(&deploy)[0],
            ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
        );
        assert_eq!(row(&deploy, 0, "nginx")[1], "0/3");

        let ing = c.ok(&["get", "ing"]);
        assert_eq!(
            table(&ing)[0],
            ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
        );
        // ADDRESS is empty, so the row has one column fewer than the header.
        assert_eq!(
            row(&ing, 0, "ingress-nginx")[1..4],
            ["<none>", "foo.bar.com", "80"]
        );
        assert_eq!(
            row(&ing, 0, "mywebsite-tls")[2..5],
            ["mywebsite.com", "80,", "443"]
        );

        let netpol = c.ok(&["get", "netpol"]);
        assert_eq!(table(&netpol)[0], ["NAME", "POD-SELECTOR", "AGE"]);
        assert_eq!(row(&netpol, 0, "allow-alice-clients-and")[1], "app=db");
        assert_eq!(row(&netpol, 0, "allow-alice-or-clients")[1], "app=db");

        let ns = c.ok(&["get", "ns"]);
        assert_eq!(table(&ns)[0], ["NAME", "STATUS", "AGE"]);
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            assert_eq!(row(&ns, 0, name)[1], "Active", "{ns}");
        }

        let everything = c.ok(&["get", "all"]);
        assert_eq!(
            row(&everything, 0, "service/nginx")[4],
            "80:30002/TCP",
            "{everything}"
        );
        assert_eq!(
            row(&everything, 0, "deployment.apps/nginx")[1],
            "0/3",
            "{everything}"
        );

        let resources = c.ok(&["api-resources"]);
        assert_eq!(
            table(&resources)[0],
            ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
        );
        assert_eq!(
            row(&resources, 0, "services"),
            ["services", "svc", "v1", "true", "Service"]
        );
        assert_eq!(
            row(&resources, 0, "ingresses"),
            [
                "ingresses",
                "ing",
                "networking.k8s.io/v1",
                "true",
                "Ingress"
            ]
        );
        assert_eq!(
            row(&resources, 0, "deployments")[1..3],
            ["deploy", "apps/v1"]
        );

        // 5. describe.
        let d = c.ok(&["describe", "svc", "nginx"]);
        assert_eq!(described(&d, "Name"), "nginx");
        assert_eq!(described(&d, "Type"), "NodePort");
        assert!(is_cluster_ip(described(&d, "IP")), "{d}");
        assert_eq!(described(&d, "IPs"), described(&d, "IP"));
        assert_eq!(described(&d, "IP Families"), "IPv4");
        assert_eq!(described(&d, "IP Family Policy"), "SingleStack");
        assert_eq!(
            described(&d, "Port").split_whitespace().collect::<Vec<_>>(),
            ["<unset>", "80/TCP"]
        );
        assert_eq!(described(&d, "TargetPort"), "80/TCP");
        assert_eq!(
            described(&d, "NodePort")
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["<unset>", "30002/TCP"]
        );
        // No pods run, so no endpoints yet: as on a real cluster whose pods are not ready.
        assert_eq!(described(&d, "Endpoints"), "<none>");
        assert_eq!(described(&d, "Session Affinity"), "None");
        assert_eq!(described(&d, "External Traffic Policy"), "Cluster");

        let d = c.ok(&["describe", "svc", "my-nginx"]);
        let ports: Vec<&str> = d
            .lines()
            .filter_map(|l| l.strip_prefix("Port:"))
            .map(str::trim)
            .collect();
        assert_eq!(ports.len(), 2, "{d}");
        assert_eq!(
            ports[0].split_whitespace().collect::<Vec<_>>(),
            ["http", "8080/TCP"]
        );
        assert_eq!(
            ports[1].split_whitespace().collect::<Vec<_>>(),
            ["https", "443/TCP"]
        );

        let d = c.ok(&["describe", "deploy", "nginx"]);
        assert_eq!(described(&d, "Selector"), "app=nginx");
        assert_eq!(
            described(&d, "Replicas"),
            "3 desired | 0 updated | 0 total | 0 available | 0 unavailable"
        );
        assert_eq!(described(&d, "StrategyType"), "RollingUpdate");
        assert_eq!(described(&d, "    Image"), "nginx:1.19");

        let d = c.ok(&["describe", "ingress", "mywebsite-tls"]);
        assert_eq!(described(&d, "Name"), "mywebsite-tls");
        assert!(
            d.lines()
                .any(|l| l.trim() == "mywebsite-tls terminates mywebsite.com"),
            "{d}"
        );
        assert!(
            d.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [
                    "/",
                    "webapp:8080",
                    "(<error:",
                    "services",
                    "\"webapp\"",
                    "not",
                    "found>)"
                ]),
            "{d}"
        );
        let d = c.ok(&["describe", "ingress", "ingress-nginx"]);
        assert!(
            d.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["/", "nginx:80", "(<none>)"]),
            "{d}"
        );
        assert_eq!(
            described(&d, "Annotations"),
            "kubernetes.io/ingress.class: nginx"
        );

        // 7. explain, from the server's OpenAPI.
        let e = c.ok(&["explain", "service.spec.ports"]);
        assert!(
            e.lines().any(|l| l == "FIELD: ports <[]ServicePort>"),
            "{e}"
        );
        assert!(
            e.lines().any(|l| l == "  port\t<integer> -required-"),
            "{e}"
        );
        assert!(e.lines().any(|l| l == "  targetPort\t<IntOrString>"), "{e}");
        let e = c.ok(&["explain", "deployment.spec", "--recursive"]);
        assert!(
            e.lines()
                .any(|l| l == "  selector\t<LabelSelector> -required-"),
            "{e}"
        );
        assert!(
            e.lines()
                .any(|l| l.trim_start() == "containers\t<[]Container> -required-"),
            "{e}"
        );

        // 6. delete -f of a manifest with two objects.
        let out = c.ok(&["delete", "-f", &example("nginx-nodeport.yaml")]);
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            [
                "service \"nginx\" deleted",
                "deployment.apps \"nginx\" deleted"
            ]
        );
        let err = c.fails(&["get", "svc", "nginx"]);
        assert_eq!(
            err.trim(),
            "Error from server (NotFound): services \"nginx\" not found"
        );
        let err = c.fails(&["get", "deploy", "nginx"]);
        assert_eq!(
            err.trim(),
            "Error from server (NotFound): deployments.apps \"nginx\" not found"
        );
    });
}

#[test]
fn fixed_cluster_ip_needs_its_service_range() {
    let kube_dns = example("kube-dns-fixed-ip.yaml");
    each_version(&[], |c| {
        let err = c.fails(&["apply", "-f", &kube_dns]);
        assert_eq!(
            err.trim(),
            "The Service \"kube-dns\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.0.0.2\"}: failed to \
             allocate IP 10.0.0.2: provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12"
        );
    });
    each_version(&["--service-cluster-ip-range", "10.0.0.0/16"], |c| {
        // The whole directory at once: everything, kube-dns included, is created.
        let out = c.ok(&["apply", "-f", &examples_dir().to_string_lossy()]);
        assert!(
            out.lines().any(|l| l == "service/kube-dns created"),
            "{out}"
        );
        assert_eq!(
            out.lines().filter(|l| l.ends_with(" created")).count(),
            16,
            "{out}"
        );
        let got = c.ok(&["get", "svc", "kube-dns", "-n", "kube-system"]);
        let r = row(&got, 0, "kube-dns");
        assert_eq!(
            r[1..5],
            ["ClusterIP", "10.0.0.2", "<none>", "53/UDP,53/TCP,9153/TCP"],
            "{got}"
        );
        let kubernetes = c.ok(&["get", "svc", "kubernetes"]);
        assert_eq!(row(&kubernetes, 0, "kubernetes")[2], "10.0.0.1");
    });
}

const WEB_V1: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
";

const WEB_V2: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
  labels:
    tier: front
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 9090
  - name: https
    port: 443
    targetPort: 8443
";

/// `ports` of a Service as `name:port->targetPort` strings.
fn ports_of(c: &Cluster, name: &str) -> Vec<String> {
    let json: Value =
        serde_json::from_str(&c.ok(&["get", "svc", name, "-o", "json"])).expect("JSON");
    json["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}",
                p["name"].as_str().unwrap_or("-"),
                p["port"],
                p["targetPort"]
            )
        })
        .collect()
}

fn labels_of(c: &Cluster, name: &str) -> String {
    row(&c.ok(&["get", "svc", name, "--show-labels"]), 0, name)
        .last()
        .expect("LABELS")
        .to_string()
}

#[test]
fn apply_twice_client_side_and_server_side() {
    each_version(&[], |c| {
        // 2. Client-side apply: created, unchanged, configured, and back.
        assert_eq!(
            c.stdin(&["apply"], WEB_V1, true).stdout.trim(),
            "service/web created"
        );
        let ip = row(&c.ok(&["get", "svc", "web"]), 0, "web")[2].to_owned();
        assert_eq!(
            c.stdin(&["apply"], WEB_V1, true).stdout.trim(),
            "service/web unchanged"
        );
        assert_eq!(
            c.stdin(&["apply"], WEB_V2, true).stdout.trim(),
            "service/web configured"
        );
        assert_eq!(ports_of(c, "web"), ["http:80->9090", "https:443->8443"]);
        assert_eq!(labels_of(c, "web"), "tier=front");
        assert_eq!(
            row(&c.ok(&["get", "svc", "web"]), 0, "web")[4],
            "80/TCP,443/TCP"
        );
        // Applying the original again removes what the previous apply added (last-applied-configuration),
        // and the strategic merge patch keeps the port's name.
        assert_eq!(
            c.stdin(&["apply"], WEB_V1, true).stdout.trim(),
            "service/web configured"
        );
        assert_eq!(ports_of(c, "web"), ["http:80->8080"]);
        assert_eq!(labels_of(c, "web"), "<none>");
        assert_eq!(
            c.stdin(&["apply"], WEB_V1, true).stdout.trim(),
            "service/web unchanged"
        );
        // The allocated cluster IP survives every apply (the manifest never names it).
        assert_eq!(row(&c.ok(&["get", "svc", "web"]), 0, "web")[2], ip);

        // Server-side apply creates, then updates.
        let ssa1 = WEB_V1.replace("name: web\n", "name: ssa\n");
        let ssa2 = WEB_V2.replace("name: web\n", "name: ssa\n");
        let out = c.stdin(&["apply", "--server-side"], &ssa1, true).stdout;
        assert_eq!(out.trim(), "service/ssa serverside-applied");
        assert_eq!(ports_of(c, "ssa"), ["http:80->8080"]);
        let out = c.stdin(&["apply", "--server-side"], &ssa2, true).stdout;
        assert_eq!(out.trim(), "service/ssa serverside-applied");
        assert_eq!(ports_of(c, "ssa"), ["http:80->9090", "https:443->8443"]);
        assert_eq!(labels_of(c, "ssa"), "tier=front");

        // 6. delete -f and delete by name.
        assert_eq!(
            c.stdin(&["delete"], WEB_V1, true).stdout.trim(),
            "service \"web\" deleted"
        );
        assert_eq!(
            c.ok(&["delete", "svc", "ssa"]).trim(),
            "service \"ssa\" deleted"
        );
        for name in ["web", "ssa"] {
            let err = c.fails(&["get", "svc", name]);
            assert_eq!(
                err.trim(),
                format!("Error from server (NotFound): services \"{name}\" not found")
            );
        }
        let err = c.fails(&["delete", "svc", "ssa"]);
        assert_eq!(
            err.trim(),
            "Error from server (NotFound): services \"ssa\" not found"
        );
    });
}

/// A background `kubectl get -w` whose stdout lines are collected as they come.
struct Watcher {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Watcher {
    fn start(c: &Cluster, args: &[&str]) -> Self {
        let mut child = c.k.spawn(args).expect("spawning kubectl -w");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("lines").push(line);
            }
        });
        Watcher { child, lines }
    }

    /// The watch events (first two columns, as `EVENT NAME`) seen so far for `name`.
    fn events(&self, name: &str) -> Vec<String> {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|r| r.get(1) == Some(&name))
            .map(|r| r[0].to_owned())
            .collect()
    }

    fn wait_for(&mut self, name: &str, want: &[&str]) {
        let ok = eventually(Duration::from_secs(10), || self.events(name) == want);
        if !ok {
            let _ = self.child.kill();
            let stderr = self.child.stderr.take().map(std::io::read_to_string);
            panic!(
                "watch events for {name}: want {want:?}, got {:?}\nall lines: {:#?}\nstderr: {stderr:?}",
                self.events(name),
                self.lines.lock().expect("lines")
            );
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const WATCHED: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: watched
spec:
  ports:
  - port: 80
";

#[test]
fn watch_sees_create_update_delete_in_order() {
    each_version(&[], |c| {
        // 4. A list watch: the initial list, then every change as it happens.
        let mut all = Watcher::start(c, &["get", "svc", "-w", "--output-watch-events"]);
        all.wait_for("kubernetes", &["ADDED"]);
        c.stdin(&["apply"], WATCHED, true);
        all.wait_for("watched", &["ADDED"]);

        // A single-object watch: kubectl prints the object it got, then the changes.
        let mut one = Watcher::start(c, &["get", "svc", "watched", "-w", "--output-watch-events"]);
        one.wait_for("watched", &["ADDED"]);
        // Plain `-w`: rows without the EVENT column.
        let plain = Watcher::start(c, &["get", "svc", "watched", "-w"]);
        assert!(eventually(Duration::from_secs(10), || plain
            .lines
            .lock()
            .expect("lines")
            .len()
            == 2));

        assert_eq!(
            c.ok(&["label", "svc", "watched", "stage=2"]).trim(),
            "service/watched labeled"
        );
        all.wait_for("watched", &["ADDED", "MODIFIED"]);
        one.wait_for("watched", &["ADDED", "MODIFIED"]);

        assert_eq!(
            c.ok(&["delete", "svc", "watched"]).trim(),
            "service \"watched\" deleted"
        );
        all.wait_for("watched", &["ADDED", "MODIFIED", "DELETED"]);
        one.wait_for("watched", &["ADDED", "MODIFIED", "DELETED"]);
        // Nobody else changed: the other rows were listed once.
        assert_eq!(all.events("kubernetes"), ["ADDED"]);

        assert!(eventually(Duration::from_secs(10), || plain
            .lines
            .lock()
            .expect("lines")
            .len()
            == 4));
        let lines = plain.lines.lock().expect("lines").clone();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            TABLE_HEADER
        );
        for l in &lines[1..] {
            let r: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(r[..2], ["watched", "ClusterIP"], "{lines:#?}");
            assert_eq!(r[4], "80/TCP");
        }
        drop(plain);
        drop(one);
        drop(all);
    });
}

#[test]
fn invalid_manifests_are_refused_with_kubernetes_messages() {
    each_version(&[], |c| {
        // 8. Field errors, as kubectl prints a 422.
        let bad = "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ports:\n  - name: a\n    port: 0\n  - name: b\n    port: 70000\n";
        let err = c.stdin(&["apply"], bad, false).stderr;
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines[0].trim_end(),
            "The Service \"bad\" is invalid:",
            "{err}"
        );
        assert!(
            lines.contains(
                &"* spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
            ),
            "{err}"
        );
        assert!(
            lines.contains(&"* spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive"),
            "{err}"
        );

        let node_port = "apiVersion: v1\nkind: Service\nmetadata:\n  name: np\nspec:\n  ports:\n  - port: 80\n    nodePort: 30100\n";
        let err = c.stdin(&["apply"], node_port, false).stderr;
        assert_eq!(
            err.trim(),
            "The Service \"np\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
        );

        let bad_name = "apiVersion: v1\nkind: Service\nmetadata:\n  name: My_Svc\nspec:\n  ports:\n  - port: 80\n";
        let err = c.stdin(&["apply"], bad_name, false).stderr;
        assert_eq!(
            err.trim(),
            "The Service \"My_Svc\" is invalid: metadata.name: Invalid value: \"My_Svc\": a DNS-1035 label must \
             consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with \
             an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is \
             '[a-z]([-a-z0-9]*[a-z0-9])?')"
        );

        // Unknown fields: refused under the default strict validation, a warning under --validate=warn.
        let dir = tempfile::tempdir().expect("tempdir");
        let bogus = dir.path().join("bogus.yaml");
        std::fs::write(
            &bogus,
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: bogus\nspec:\n  bogus: 1\n  ports:\n  - port: 80\n",
        )
        .expect("writing bogus.yaml");
        let bogus = bogus.to_string_lossy();
        for verb in ["apply", "create"] {
            let err = c.fails(&[verb, "-f", &bogus]);
            assert_eq!(
                err.trim(),
                format!(
                    "Error from server (BadRequest): error when creating \"{bogus}\": Service in version \"v1\" \
                     cannot be handled as a Service: strict decoding error: unknown field \"spec.bogus\""
                )
            );
        }
        let run = c.k.run(&["apply", "--validate=warn", "-f", &bogus]);
        assert!(run.success, "{run:?}");
        assert_eq!(run.stderr.trim(), "Warning: unknown field \"spec.bogus\"");
        assert_eq!(run.stdout.trim(), "service/bogus created");
        let json: Value =
            serde_json::from_str(&c.ok(&["get", "svc", "bogus", "-o", "json"])).expect("JSON");
        assert!(
            json["spec"].get("bogus").is_none(),
            "the unknown field is dropped: {json}"
        );
    });
}

fn node_port_service(name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: {port}\n"
    )
}

fn cluster_ip_service(name: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  clusterIP: {ip}\n  ports:\n  - port: 80\n"
    )
}

#[test]
fn allocations_conflict_and_are_released() {
    each_version(&[], |c| {
        // 9. The nginx example holds node port 30002 and a cluster IP.
        c.ok(&["apply", "-f", &example("nginx-nodeport.yaml")]);
        let nginx_ip = row(&c.ok(&["get", "svc", "nginx"]), 0, "nginx")[2].to_owned();

        let err = c
            .stdin(&["apply"], &node_port_service("taken", 30002), false)
            .stderr;
        assert_eq!(
            err.trim(),
            "The Service \"taken\" is invalid: spec.ports[0].nodePort: Invalid value: 30002: provided port is already allocated"
        );
        let err = c
            .stdin(
                &["apply"],
                &cluster_ip_service("taken-ip", &nginx_ip),
                false,
            )
            .stderr;
        assert_eq!(
            err.trim(),
            format!(
                "The Service \"taken-ip\" is invalid: spec.clusterIPs: Invalid value: []string{{\"{nginx_ip}\"}}: \
                 failed to allocate IP {nginx_ip}: provided IP is already allocated"
            )
        );
        // A refused Service leaves nothing behind.
        c.fails(&["get", "svc", "taken"]);

        // Deleting the holder releases both.
        c.ok(&["delete", "svc", "nginx"]);
        assert_eq!(
            c.stdin(&["apply"], &node_port_service("taken", 30002), true)
                .stdout
                .trim(),
            "service/taken created"
        );
        assert_eq!(
            c.stdin(&["apply"], &cluster_ip_service("taken-ip", &nginx_ip), true)
                .stdout
                .trim(),
            "service/taken-ip created"
        );
        assert_eq!(
            row(&c.ok(&["get", "svc", "taken"]), 0, "taken")[4],
            "80:30002/TCP"
        );
        assert_eq!(
            row(&c.ok(&["get", "svc", "taken-ip"]), 0, "taken-ip")[2],
            nginx_ip
        );

        // Changing a NodePort Service to ClusterIP releases its node port; its cluster IP stays.
        c.ok(&["apply", "-f", &example("svc-1-nodeport.yaml")]);
        let before = row(&c.ok(&["get", "svc", "svc-1"]), 0, "svc-1")[2].to_owned();
        let out = c.ok(&[
            "patch",
            "svc",
            "svc-1",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"type":"ClusterIP"}}"#,
        ]);
        assert_eq!(out.trim(), "service/svc-1 patched");
        let after = c.ok(&["get", "svc", "svc-1"]);
        assert_eq!(
            row(&after, 0, "svc-1")[1..5],
            ["ClusterIP", before.as_str(), "<none>", "2222/TCP"]
        );
        let json: Value =
            serde_json::from_str(&c.ok(&["get", "svc", "svc-1", "-o", "json"])).expect("JSON");
        assert!(
            json["spec"].get("externalTrafficPolicy").is_none(),
            "{json}"
        );
        let out = c
            .stdin(&["apply"], &node_port_service("takes-30022", 30022), true)
            .stdout;
        assert_eq!(out.trim(), "service/takes-30022 created");
    });
}

#[test]
fn label_annotate_and_patch_a_service() {
    each_version(&[], |c| {
        // 10.
        c.ok(&["apply", "-f", &example("nginx-nodeport.yaml")]);
        assert_eq!(
            c.ok(&["label", "svc", "nginx", "env=prod"]).trim(),
            "service/nginx labeled"
        );
        let err = c.fails(&["label", "svc", "nginx", "env=dev"]);
        assert_eq!(
            err.trim(),
            "error: 'env' already has a value (prod), and --overwrite is false"
        );
        assert_eq!(
            c.ok(&["label", "svc", "nginx", "env=dev", "--overwrite"])
                .trim(),
            "service/nginx labeled"
        );
        assert_eq!(labels_of(c, "nginx"), "app=nginx,env=dev");
        assert_eq!(
            c.ok(&["label", "svc", "nginx", "env-"]).trim(),
            "service/nginx unlabeled"
        );
        assert_eq!(labels_of(c, "nginx"), "app=nginx");

        assert_eq!(
            c.ok(&["annotate", "svc", "nginx", "owner=team-a"]).trim(),
            "service/nginx annotated"
        );
        let d = c.ok(&["describe", "svc", "nginx"]);
        assert_eq!(described(&d, "Annotations"), "owner: team-a");

        let patch =
            |kind: &str, body: &str| c.ok(&["patch", "svc", "nginx", "--type", kind, "-p", body]);
        assert_eq!(
            patch("merge", r#"{"spec":{"sessionAffinity":"ClientIP"}}"#).trim(),
            "service/nginx patched"
        );
        assert_eq!(
            described(&c.ok(&["describe", "svc", "nginx"]), "Session Affinity"),
            "ClientIP"
        );
        assert_eq!(
            patch(
                "json",
                r#"[{"op":"replace","path":"/spec/ports/0/targetPort","value":8080}]"#
            )
            .trim(),
            "service/nginx patched"
        );
        assert_eq!(
            described(&c.ok(&["describe", "svc", "nginx"]), "TargetPort"),
            "8080/TCP"
        );
        // Strategic merge: the port list merges by `port`; the new port needs names on both.
        let out = patch(
            "strategic",
            r#"{"spec":{"ports":[{"port":80,"name":"http"},{"port":443,"name":"https","targetPort":8443}]}}"#,
        );
        assert_eq!(out.trim(), "service/nginx patched");
        assert_eq!(ports_of(c, "nginx"), ["http:80->8080", "https:443->8443"]);
        let got = c.ok(&["get", "svc", "nginx"]);
        let r = row(&got, 0, "nginx");
        let (first, second) = r[4].split_once(',').expect("two ports");
        assert_eq!(first, "80:30002/TCP");
        assert!(
            second.starts_with("443:3") && second.ends_with("/TCP"),
            "{r:?}"
        );
        // A patch that changes nothing says so.
        assert_eq!(
            patch("merge", r#"{"spec":{"sessionAffinity":"ClientIP"}}"#).trim(),
            "service/nginx patched (no change)"
        );
        // A patch that makes the object invalid is refused with the field error.
        let err = c.fails(&[
            "patch",
            "svc",
            "nginx",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"sessionAffinity":"Sticky"}}"#,
        ]);
        assert!(
            err.trim()
                .starts_with("The Service \"nginx\" is invalid: spec.sessionAffinity: Unsupported value: \"Sticky\""),
            "{err}"
        );

        // expose reads the Deployment's selector and creates a Service from it; set selector patches it.
        let out = c.ok(&[
            "expose",
            "deploy",
            "nginx",
            "--name",
            "exposed",
            "--port",
            "8080",
            "--target-port",
            "80",
        ]);
        assert_eq!(out.trim(), "service/exposed exposed");
        let wide = c.ok(&["get", "svc", "exposed", "-o", "wide"]);
        let r = row(&wide, 0, "exposed");
        assert_eq!(r[1], "ClusterIP");
        assert!(is_cluster_ip(r[2]), "{wide}");
        assert_eq!(r[4], "8080/TCP");
        assert_eq!(r[6], "app=nginx");
        assert_eq!(
            c.ok(&["set", "selector", "svc", "exposed", "app=other"])
                .trim(),
            "service/exposed selector updated"
        );
        assert_eq!(
            row(
                &c.ok(&["get", "svc", "exposed", "-o", "wide"]),
                0,
                "exposed"
            )[6],
            "app=other"
        );
        let names = c.ok(&["get", "svc", "-o", "name"]);
        assert_eq!(
            names.lines().collect::<Vec<_>>(),
            ["service/exposed", "service/kubernetes", "service/nginx"]
        );
    });
}

#[test]
fn wrong_token_is_unauthorized() {
    each_version(&[], |c| {
        // 11. The same cluster, the wrong bearer token.
        let token = c.server.token().expect("token");
        let good = std::fs::read_to_string(c.server.kubeconfig()).expect("kubeconfig");
        assert!(good.contains(&token));
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("kubeconfig");
        std::fs::write(&bad, good.replace(&token, "not-the-token")).expect("writing kubeconfig");
        let k = Kubectl::new(c.version, &bad).expect("kubectl");
        let run = k.run(&["get", "svc"]);
        assert!(!run.success, "{run:?}");
        // kubectl's own words when its discovery request is refused with 401 (1.32 and 1.33 alike).
        assert_eq!(
            run.stderr.lines().last(),
            Some(
                "error: You must be logged in to the server (the server has asked for the client to provide credentials)"
            ),
            "{run:?}"
        );
        assert_eq!(run.stdout, "");
        // The right token still works.
        assert_eq!(row(&c.ok(&["get", "svc"]), 0, "kubernetes")[1], "ClusterIP");
    });
}

#[test]
fn scale_a_deployment() {
    each_version(&[], |c| {
        c.ok(&["apply", "-f", &example("nginx-nodeport.yaml")]);
        assert_eq!(
            c.ok(&["scale", "deployment", "nginx", "--replicas=5"])
                .trim(),
            "deployment.apps/nginx scaled"
        );
        let spec = c.ok(&[
            "get",
            "deploy",
            "nginx",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation}",
        ]);
        assert_eq!(spec.trim(), "5 2");
        // A precondition that does not hold is refused, and nothing changes.
        let err = c.fails(&[
            "scale",
            "deployment",
            "nginx",
            "--replicas=2",
            "--current-replicas=3",
        ]);
        assert!(err.contains("Expected replicas to be 3, was 5"), "{err}");
        c.ok(&[
            "scale",
            "deployment",
            "nginx",
            "--replicas=2",
            "--current-replicas=5",
        ]);
        let scale = c.ok(&[
            "get",
            "--raw",
            "/apis/apps/v1/namespaces/default/deployments/nginx/scale",
        ]);
        let scale: Value = serde_json::from_str(&scale).expect("Scale JSON");
        assert_eq!(scale["kind"], "Scale");
        assert_eq!(scale["apiVersion"], "autoscaling/v1");
        assert_eq!(scale["spec"]["replicas"], 2);
        assert_eq!(scale["status"]["selector"], "app=nginx");
        let resources = c.ok(&["api-resources", "--api-group=apps", "-o", "name"]);
        assert!(resources.contains("deployments.apps"), "{resources}");
    });
}

/// A Service of `policy` (and `families`, when given) as YAML.
fn dual_stack_service(name: &str, policy: &str, families: &str) -> String {
    let families = if families.is_empty() {
        String::new()
    } else {
        format!("  ipFamilies: [{families}]\n")
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ipFamilyPolicy: {policy}\n\
         {families}  selector:\n    app: {name}\n  ports:\n  - port: 80\n"
    )
}

#[test]
fn dual_stack_services_and_pod_cidrs() {
    for version in KUBECTL_VERSIONS {
        // An API server and the controllers (no nodes) on a dual-stack cluster, IPv4 first.
        let server = TestServer::start_up(
            Path::new(env!("CARGO_BIN_EXE_pontifex")),
            &[
                "--service-cluster-ip-range",
                "10.96.0.0/16,fd00:10:96::/112",
                "--cluster-cidr",
                "10.244.0.0/16,fd00:10:244::/56",
            ],
        )
        .expect("starting pontifex up");
        let c = Cluster {
            k: server.kubectl(version).expect("kubectl"),
            server,
            version,
        };
        let field = |svc: &str, path: &str| {
            c.ok(&["get", "svc", svc, "-o", &format!("jsonpath={{{path}}}")])
        };
        let list = |svc: &str, path: &str| -> Vec<String> {
            serde_json::from_str(&field(svc, path)).expect("a JSON list")
        };
        c.stdin(
            &["apply"],
            &dual_stack_service("web", "PreferDualStack", ""),
            true,
        );
        assert_eq!(list("web", ".spec.ipFamilies"), ["IPv4", "IPv6"]);
        let ips = list("web", ".spec.clusterIPs");
        assert_eq!(ips.len(), 2, "{ips:?}");
        assert!(is_cluster_ip(&ips[0]), "{ips:?}");
        assert!(ips[1].starts_with("fd00:10:96::"), "{ips:?}");
        // CLUSTER-IP is the primary address.
        let got = c.ok(&["get", "svc", "web"]);
        assert_eq!(row(&got, 0, "web")[1..3], ["ClusterIP", ips[0].as_str()]);

        // Downgrade: the policy alone releases the IPv6 address.
        c.ok(&[
            "patch",
            "svc",
            "web",
            "-p",
            r#"{"spec":{"ipFamilyPolicy":"SingleStack"}}"#,
        ]);
        assert_eq!(list("web", ".spec.clusterIPs"), [ips[0].clone()]);
        assert_eq!(list("web", ".spec.ipFamilies"), ["IPv4"]);
        // Upgrade again.
        c.ok(&[
            "patch",
            "svc",
            "web",
            "-p",
            r#"{"spec":{"ipFamilyPolicy":"RequireDualStack"}}"#,
        ]);
        let again = list("web", ".spec.clusterIPs");
        assert_eq!(again.len(), 2);
        assert_eq!(again[0], ips[0]);

        // IPv6 first when asked.
        c.stdin(
            &["apply"],
            &dual_stack_service("six", "RequireDualStack", "IPv6"),
            true,
        );
        assert_eq!(list("six", ".spec.ipFamilies"), ["IPv6", "IPv4"]);
        assert!(field("six", ".spec.clusterIP").starts_with("fd00:10:96::"));

        // The primary family never changes: the addresses no longer match the families.
        let err = c.fails(&[
            "patch",
            "svc",
            "six",
            "-p",
            r#"{"spec":{"ipFamilies":["IPv4","IPv6"]}}"#,
        ]);
        assert!(
            err.contains("expected an IPv4 value as indicated by `ipFamilies[0]`"),
            "{err}"
        );

        // Node IPAM: one pod CIDR per family, the primary's first.
        c.stdin(
            &["apply"],
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n",
            true,
        );
        let pod_cidrs = || {
            c.k.run(&["get", "node", "n1", "-o", "jsonpath={.spec.podCIDRs}"])
                .stdout
        };
        assert!(
            eventually(Duration::from_secs(20), || pod_cidrs()
                == r#"["10.244.0.0/24","fd00:10:244::/64"]"#),
            "{}",
            pod_cidrs()
        );
    }
    each_version(&[], |c| {
        // A single-stack cluster refuses RequireDualStack, in upstream's words.
        let run = c.stdin(
            &["apply"],
            &dual_stack_service("web", "RequireDualStack", ""),
            false,
        );
        assert_eq!(
            run.stderr.trim(),
            "The Service \"web\" is invalid: spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": \
             this cluster is not configured for dual-stack services"
        );
    });
}
