use std::path::Path;

use k8s_openapi::api::core::v1::{Container, ContainerPort};

use super::*;

fn container(image: &str, command: &[&str], args: &[&str], ports: &[(i32, &str)]) -> Container {
    let strings = |v: &[&str]| (!v.is_empty()).then(|| v.iter().map(|s| s.to_string()).collect());
    Container {
        name: "c".into(),
        image: Some(image.into()),
        command: strings(command),
        args: strings(args),
        ports: (!ports.is_empty()).then(|| {
            ports
                .iter()
                .map(|(p, proto)| ContainerPort {
                    container_port: *p,
                    protocol: Some(proto.to_string()),
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    }
}

fn builtin(args: &[&str]) -> Program {
    Program::Builtin {
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn nginx_without_command_serves_netexec_on_its_ports() {
    let c = container("nginx:1.19", &[], &[], &[(80, "TCP")]);
    assert_eq!(
        plan(&c),
        builtin(&["netexec", "--http-port=80", "--udp-port=-1"])
    );
}

#[test]
fn tcp_and_udp_ports_each_get_a_server() {
    let c = container(
        "coredns",
        &[],
        &[],
        &[(53, "UDP"), (53, "TCP"), (9153, "TCP")],
    );
    assert_eq!(
        plan(&c),
        builtin(&[
            "netexec",
            "--http-port=53",
            "--http-port=9153",
            "--udp-port=53"
        ])
    );
    let only_udp = container("x", &[], &[], &[(5353, "UDP")]);
    assert_eq!(
        plan(&only_udp),
        builtin(&["netexec", "--http-port=-1", "--udp-port=5353"])
    );
}

#[test]
fn no_command_no_ports_idles() {
    assert_eq!(
        plan(&container("busybox", &[], &[], &[])),
        builtin(&["pause"])
    );
    assert_eq!(
        plan(&container("registry.k8s.io/pause:3.10", &[], &[], &[])),
        builtin(&["pause"])
    );
}

#[test]
fn agnhost_image_runs_the_builtin_with_its_args() {
    let img = "registry.k8s.io/e2e-test-images/agnhost:2.53";
    let c = container(
        img,
        &[],
        &["netexec", "--http-port=8080", "--udp-port=8081"],
        &[(8080, "TCP")],
    );
    assert_eq!(
        plan(&c),
        builtin(&["netexec", "--http-port=8080", "--udp-port=8081"])
    );
    assert_eq!(
        plan(&container(img, &[], &["serve-hostname"], &[])),
        builtin(&["serve-hostname"])
    );
    assert_eq!(
        plan(&container(img, &["/agnhost"], &["pause"], &[])),
        builtin(&["pause"])
    );
    assert_eq!(
        plan(&container(img, &["/agnhost", "netexec"], &[], &[])),
        builtin(&["netexec"])
    );
    // A shell in the agnhost image is a real program.
    assert_eq!(
        plan(&container(img, &["sh", "-c", "sleep 1"], &[], &[])),
        Program::Exec {
            argv: vec!["sh".into(), "-c".into(), "sleep 1".into()]
        }
    );
}

#[test]
fn command_and_args_run_the_program() {
    let c = container("busybox", &["sh", "-c"], &["echo hi"], &[(80, "TCP")]);
    assert_eq!(
        plan(&c),
        Program::Exec {
            argv: vec!["sh".into(), "-c".into(), "echo hi".into()]
        }
    );
    let args_only = container("busybox", &[], &["sleep", "5"], &[]);
    assert_eq!(
        plan(&args_only),
        Program::Exec {
            argv: vec!["sleep".into(), "5".into()]
        }
    );
}

#[test]
fn argv_prefixes_the_builtin_with_the_binary() {
    let argv = builtin(&["pause"]).argv(Path::new("/usr/bin/pontifex"));
    assert_eq!(argv, vec!["/usr/bin/pontifex", "agnhost", "pause"]);
    let argv = Program::Exec {
        argv: vec!["true".into()],
    }
    .argv(Path::new("/x"));
    assert_eq!(argv, vec!["true"]);
}

#[test]
fn image_basename_strips_registry_tag_and_digest() {
    assert_eq!(
        image_basename("registry.k8s.io/e2e-test-images/agnhost:2.53"),
        "agnhost"
    );
    assert_eq!(
        image_basename("localhost:5000/agnhost@sha256:abc"),
        "agnhost"
    );
    assert_eq!(image_basename("nginx"), "nginx");
}
