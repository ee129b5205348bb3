//! Regenerate `crates/pontifex-api/src/protobuf/schema.rs`, the protobuf schema the API server uses to
//! decode `application/vnd.kubernetes.protobuf` request bodies.
//!
//! ```text
//! # once: unpack k8s-pb's sources into the cargo registry (it is not a dependency of the workspace)
//! cargo new --lib /tmp/k8s-pb-src && cargo add --manifest-path /tmp/k8s-pb-src/Cargo.toml k8s-pb@=0.9.0
//! cargo fetch --manifest-path /tmp/k8s-pb-src/Cargo.toml
//! cargo run -p pontifex-api --example gen_proto_schema
//! ```
//!
//! It reads k8s-pb's Rust sources (field numbers and wire kinds) from the cargo registry (or from
//! `$K8S_PB_SRC`), the served OpenAPI documents (JSON names), and its own `KEEP_ZERO` list; see
//! `generate.rs`. The library's test `protobuf::tests::schema_is_fresh` fails when the committed file
//! differs from this program's output.

mod generate;

/// The k8s-pb release the schema is generated from.
const K8S_PB_VERSION: &str = "0.9.0";

fn main() -> Result<(), String> {
    let src = generate::find_k8s_pb_src(K8S_PB_VERSION)
        .ok_or("k8s-pb sources not found: run `cargo fetch` or set K8S_PB_SRC")?;
    let docs: Vec<serde_json::Value> = pontifex_api::openapi::documents()
        .iter()
        .map(|d| serde_json::from_slice(d.json()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let text = generate::generate(&src, &docs)?;
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protobuf/schema.rs");
    std::fs::write(&out, text).map_err(|e| format!("writing {}: {e}", out.display()))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
