use super::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn sha256_fips_vectors() {
    assert_eq!(
        hex(&sha256(b"")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hex(&sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hex(&sha256(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
}

#[test]
fn base32_rfc4648_vectors() {
    assert_eq!(base32(b""), "");
    assert_eq!(base32(b"f"), "MY======");
    assert_eq!(base32(b"fo"), "MZXQ====");
    assert_eq!(base32(b"foo"), "MZXW6===");
    assert_eq!(base32(b"foob"), "MZXW6YQ=");
    assert_eq!(base32(b"fooba"), "MZXW6YTB");
    assert_eq!(base32(b"foobar"), "MZXW6YTBOI======");
}

#[test]
fn kube_proxy_chain_hash() {
    assert_eq!(hash_prefix("ns1/svc1:p80tcp", 16), "XPGD46QRK7WJZT7O");
    assert_eq!(hash_prefix("ns1/svc1/tcp/p80", 8), "ULMVA6XW");
}
