use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use proptest::prelude::*;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn err(text: &str) -> String {
    LabelSelector::parse(text)
        .expect_err(&format!("{text:?} should not parse"))
        .to_string()
}

const NAME_PART_RULE: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

// --- label selectors: parsing (labels/selector_test.go TestSelectorParse and friends) ----------------

#[test]
fn good_selectors_parse_and_print_canonically() {
    let cases = [
        ("", ""),
        ("x=a,y=b,z=c", "x=a,y=b,z=c"),
        ("z=c,x=a", "x=a,z=c"),
        (" x = a , y = b ", "x=a,y=b"),
        ("x!=y", "x!=y"),
        ("x==y", "x==y"),
        ("x=", "x="),
        ("x= ,z= ", "x=,z="),
        ("!x", "!x"),
        ("x", "x"),
        ("x>1", "x>1"),
        ("x<1", "x<1"),
        ("x>1,z<5", "x>1,z<5"),
        ("x in (b,a,a)", "x in (a,b)"),
        ("x notin(a)", "x notin (a)"),
        ("x in (,a)", "x in (,a)"),
        ("x in ()", "x in ()"),
        ("x in (in, notin)", "x in (in,notin)"),
        ("in in (a)", "in in (a)"),
        (
            "example.com/app=web,tier in (db)",
            "example.com/app=web,tier in (db)",
        ),
        ("a\tin\t(x),\n!b", "a in (x),!b"),
    ];
    for (text, want) in cases {
        let sel = LabelSelector::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(sel.to_string(), want, "{text:?}");
        // The printed form parses to the same selector.
        assert_eq!(LabelSelector::parse(want).unwrap(), sel, "{want:?}");
    }
}

#[test]
fn bad_selectors_fail_with_upstream_messages() {
    let cases = [
        (
            "x=a||y=b",
            "unable to parse requirement: values[0][x]: Invalid value: \"a||y\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ),
        ("x==a==b", "found '==', expected: ',' or 'end of string'"),
        ("!x=a", "found '=', expected: ',' or 'end of string'"),
        ("x=a,", "found '', expected: identifier after ','"),
        (
            ",x",
            "found ',', expected: !, identifier, or 'end of string'",
        ),
        (
            "x in (a",
            "unable to parse requirement: found '', expected: ',' or ')'",
        ),
        (
            "x in a",
            "unable to parse requirement: found 'a' expected: '('",
        ),
        (
            "x in (a,=)",
            "unable to parse requirement: found '=', expected: ',', or identifier",
        ),
        (
            "x y",
            "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt",
        ),
        (
            "x=(",
            "unable to parse requirement: found '(', expected: identifier",
        ),
        (
            "x<a",
            "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(err(text), want, "{text:?}");
    }
}

#[test]
fn invalid_keys_and_values_are_reported_like_upstream() {
    assert_eq!(
        err("-x=a"),
        format!("unable to parse requirement: <nil>: Invalid value: \"-x\": {NAME_PART_RULE}")
    );
    assert_eq!(
        err("x=-a"),
        "unable to parse requirement: values[0][x]: Invalid value: \"-a\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
    );
    let long = "a".repeat(64);
    assert_eq!(
        err(&format!("{long}=b")),
        format!(
            "unable to parse requirement: <nil>: Invalid value: \"{long}\": name part must be no more than 63 characters"
        )
    );
    assert!(err("Example.com/a").contains("prefix part a lowercase RFC 1123 subdomain"));
    assert!(err("/a").contains("prefix part must be non-empty"));
    assert!(err("a/b/c").contains("a qualified name must consist of"));
    // Values up to 63 characters, empty included, are fine.
    LabelSelector::parse(&format!("a={}", "v".repeat(63))).unwrap();
    assert!(err(&format!("a={}", "v".repeat(64))).contains("must be no more than 63 characters"));
}

// --- label selectors: matching -------------------------------------------------------------------

#[test]
fn matching() {
    let l = labels(&[("x", "y"), ("z", "w"), ("n", "5")]);
    let yes = [
        "",
        "x=y",
        "x==y",
        "x=y,z=w",
        "x!=a",
        "absent!=a",
        "x in (a,y)",
        "x notin (a,b)",
        "absent notin (a)",
        "x",
        "!absent",
        "n>4",
        "n<6",
    ];
    for text in yes {
        assert!(LabelSelector::parse(text).unwrap().matches(&l), "{text}");
    }
    let no = [
        "x=z",
        "x=y,z=a",
        "x!=y",
        "x in (a,b)",
        "absent in (a)",
        "x notin (y)",
        "absent",
        "!x",
        "n>5",
        "n<5",
        "x>1",
        "absent>1",
        "absent=",
    ];
    for text in no {
        assert!(!LabelSelector::parse(text).unwrap().matches(&l), "{text}");
    }
    // The empty value is a value: `x=` needs x present and empty.
    assert!(
        LabelSelector::parse("x=")
            .unwrap()
            .matches(&labels(&[("x", "")]))
    );
    assert!(LabelSelector::everything().matches(&BTreeMap::new()));
}

#[test]
fn exact_match_introspection() {
    let sel = LabelSelector::parse("a=1,b in (2),c in (3,4),d!=5").unwrap();
    assert_eq!(sel.requires_exact_match("a"), Some("1"));
    assert_eq!(sel.requires_exact_match("b"), Some("2"));
    assert_eq!(sel.requires_exact_match("c"), None);
    assert_eq!(sel.requires_exact_match("d"), None);
    assert_eq!(sel.requires_exact_match("e"), None);
}

// --- label selectors from metav1.LabelSelector ---------------------------------------------------

fn expr(key: &str, op: &str, values: &[&str]) -> metav1::LabelSelectorRequirement {
    metav1::LabelSelectorRequirement {
        key: key.to_owned(),
        operator: op.to_owned(),
        values: if values.is_empty() {
            None
        } else {
            Some(values.iter().map(|v| (*v).to_owned()).collect())
        },
    }
}

#[test]
fn from_api_selector() {
    let api = metav1::LabelSelector {
        match_labels: Some(labels(&[("app", "nginx")])),
        match_expressions: Some(vec![
            expr("tier", "In", &["web", "cache"]),
            expr("canary", "DoesNotExist", &[]),
            expr("env", "NotIn", &["dev"]),
            expr("zone", "Exists", &[]),
        ]),
    };
    let sel = LabelSelector::from_api(&api).unwrap();
    assert_eq!(
        sel.to_string(),
        "app=nginx,!canary,env notin (dev),tier in (cache,web),zone"
    );
    assert!(sel.matches(&labels(&[("app", "nginx"), ("tier", "web"), ("zone", "a")])));
    assert!(!sel.matches(&labels(&[("app", "nginx"), ("tier", "web")])));
    assert!(!sel.matches(&labels(&[
        ("app", "nginx"),
        ("tier", "web"),
        ("zone", "a"),
        ("canary", "")
    ])));
    assert_eq!(format_label_selector(Some(&api)), sel.to_string());

    // Empty selects everything, and prints as <none> in tables.
    let empty = metav1::LabelSelector::default();
    assert!(LabelSelector::from_api(&empty).unwrap().is_empty());
    assert!(
        LabelSelector::from_api(&empty)
            .unwrap()
            .matches(&labels(&[("a", "b")]))
    );
    assert_eq!(format_label_selector(Some(&empty)), "<none>");
    assert_eq!(format_label_selector(None), "<none>");
}

#[test]
fn from_api_errors() {
    let bad_op = metav1::LabelSelector {
        match_expressions: Some(vec![expr("a", "Gt", &["1"])]),
        ..Default::default()
    };
    assert_eq!(
        LabelSelector::from_api(&bad_op).unwrap_err().to_string(),
        "\"Gt\" is not a valid pod selector operator"
    );
    assert_eq!(format_label_selector(Some(&bad_op)), "<error>");

    let empty_in = metav1::LabelSelector {
        match_expressions: Some(vec![expr("a", "In", &[])]),
        ..Default::default()
    };
    assert_eq!(
        LabelSelector::from_api(&empty_in).unwrap_err().to_string(),
        "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"
    );

    let exists_with_values = metav1::LabelSelector {
        match_expressions: Some(vec![expr("a", "Exists", &["x"])]),
        ..Default::default()
    };
    assert_eq!(
        LabelSelector::from_api(&exists_with_values)
            .unwrap_err()
            .to_string(),
        "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist"
    );

    // Several problems aggregate as [a, b].
    let bad_key_and_value = metav1::LabelSelector {
        match_labels: Some(labels(&[("-k", "-v")])),
        ..Default::default()
    };
    let msg = LabelSelector::from_api(&bad_key_and_value)
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("[key: Invalid value: \"-k\": name part"),
        "{msg}"
    );
    assert!(
        msg.contains(", values[0][-k]: Invalid value: \"-v\": a valid label"),
        "{msg}"
    );
    assert!(msg.ends_with(']'), "{msg}");
}

#[test]
fn format_labels_sorted_or_none() {
    assert_eq!(
        format_labels(Some(&labels(&[("tier", "web"), ("app", "nginx")]))),
        "app=nginx,tier=web"
    );
    assert_eq!(format_labels(Some(&BTreeMap::new())), "<none>");
    assert_eq!(format_labels(None), "<none>");
}

fn arb_requirement() -> impl Strategy<Value = String> {
    let key = "[a-z]([a-z0-9.-]{0,6}[a-z0-9])?";
    let value = "([A-Za-z0-9]([A-Za-z0-9_.-]{0,6}[A-Za-z0-9])?)?";
    prop_oneof![
        (key, value).prop_map(|(k, v)| format!("{k}={v}")),
        (key, value).prop_map(|(k, v)| format!("{k}!={v}")),
        (key, proptest::collection::vec(value, 1..4))
            .prop_map(|(k, vs)| format!("{k} in ({})", vs.join(","))),
        (key, proptest::collection::vec(value, 1..4))
            .prop_map(|(k, vs)| format!("{k} notin ({})", vs.join(","))),
        key.prop_map(|k| k.to_string()),
        key.prop_map(|k| format!("!{k}")),
        (key, 0i64..100).prop_map(|(k, n)| format!("{k}>{n}")),
    ]
}

proptest! {
    /// Printing a parsed selector and parsing it again gives the same selector, and printing is stable.
    #[test]
    fn label_selector_round_trips(reqs in proptest::collection::vec(arb_requirement(), 0..5)) {
        let text = reqs.join(",");
        let sel = LabelSelector::parse(&text).unwrap();
        let printed = sel.to_string();
        let again = LabelSelector::parse(&printed).unwrap();
        prop_assert_eq!(&again, &sel);
        prop_assert_eq!(again.to_string(), printed);
    }
}

// --- field selectors (fields/selector_test.go) -----------------------------------------------------

#[test]
fn field_selectors_parse_and_print() {
    let cases = [
        ("", ""),
        ("x=a", "x=a"),
        ("x==a", "x=a"),
        ("y=b,x=a,z=c", "x=a,y=b,z=c"),
        ("x!=a", "x!=a"),
        ("x=a,y!=b", "x=a,y!=b"),
        ("x=", "x="),
        ("x=,z= ", "x=,z= "),
        ("x=a,,y=b", "x=a,y=b"),
        (r"x=a\,b", r"x=a\,b"),
        (r"x=a\=b\\c", r"x=a\=b\\c"),
        ("metadata.name=nginx", "metadata.name=nginx"),
    ];
    for (text, want) in cases {
        let sel = FieldSelector::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(sel.to_string(), want, "{text:?}");
        assert_eq!(FieldSelector::parse(want).unwrap(), sel);
    }
    let sel = FieldSelector::parse(r"spec.nodeName!=a\,b\=c\\").unwrap();
    assert_eq!(
        sel.terms(),
        &[FieldTerm {
            field: "spec.nodeName".to_owned(),
            op: FieldOp::NotEquals,
            value: r"a,b=c\".to_owned(),
        }]
    );
    assert_eq!(escape_value(r"a,b=c\"), r"a\,b\=c\\");
}

#[test]
fn field_selector_errors() {
    let cases = [
        ("x", "invalid selector: 'x'; can't understand 'x'"),
        ("x=a,b", "invalid selector: 'x=a,b'; can't understand 'b'"),
        (
            "x=a||y=b",
            "invalid field selector: unescaped character in value: 61",
        ),
        (
            "x==a==b",
            "invalid field selector: unescaped character in value: 61",
        ),
        (
            r"x=a\qb",
            r"invalid field selector: invalid escape sequence: \q",
        ),
        (
            r"x=a\",
            r"invalid field selector: invalid escape sequence: \",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(
            FieldSelector::parse(text).unwrap_err().to_string(),
            want,
            "{text:?}"
        );
    }
}

#[test]
fn field_selector_matching_and_unknown_fields() {
    let get = |f: &str| match f {
        "metadata.name" => Some("web".to_owned()),
        "metadata.namespace" => Some("prod".to_owned()),
        "spec.nodeName" => Some(String::new()),
        _ => None,
    };
    let yes = [
        "",
        "metadata.name=web",
        "metadata.name==web",
        "metadata.name!=db,metadata.namespace=prod",
        "spec.nodeName=",
    ];
    for text in yes {
        assert!(
            FieldSelector::parse(text).unwrap().matches(get).unwrap(),
            "{text}"
        );
    }
    let no = [
        "metadata.name=db",
        "spec.nodeName!=",
        "metadata.namespace!=prod",
    ];
    for text in no {
        assert!(
            !FieldSelector::parse(text).unwrap().matches(get).unwrap(),
            "{text}"
        );
    }
    // An unsupported field is an error even when another term already fails.
    let sel = FieldSelector::parse("metadata.name=db,spec.bogus=x").unwrap();
    assert_eq!(
        sel.matches(get).unwrap_err(),
        SelectorError::UnsupportedField("spec.bogus".to_owned())
    );
    assert_eq!(
        sel.matches(get).unwrap_err().to_string(),
        "field label not supported: spec.bogus"
    );
    assert_eq!(
        sel.check_fields(|f| f.starts_with("metadata.")),
        Err(SelectorError::UnsupportedField("spec.bogus".to_owned()))
    );
    assert!(
        FieldSelector::parse("metadata.name=a")
            .unwrap()
            .check_fields(|f| f == "metadata.name")
            .is_ok()
    );
}

#[test]
fn field_selector_pins_name_and_namespace() {
    let sel = FieldSelector::parse("metadata.namespace=prod,metadata.name=web").unwrap();
    assert_eq!(sel.requires_exact_match("metadata.name"), Some("web"));
    assert_eq!(sel.requires_exact_match("metadata.namespace"), Some("prod"));
    let sel = FieldSelector::parse("metadata.name!=web").unwrap();
    assert_eq!(sel.requires_exact_match("metadata.name"), None);
    assert_eq!(
        FieldSelector::parse("")
            .unwrap()
            .requires_exact_match("metadata.name"),
        None
    );
}
