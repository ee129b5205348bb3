use super::*;

fn not_found(group: &str, resource: &str) -> ApiError {
    ApiError::NotFound {
        group: group.into(),
        resource: resource.into(),
        name: "nginx".into(),
    }
}

#[test]
fn messages_name_the_group_qualified_resource() {
    // kubectl prints these messages as they are: `Error from server (NotFound): deployments.apps "nginx" not found`.
    assert_eq!(
        not_found("", "services").to_string(),
        "services \"nginx\" not found"
    );
    assert_eq!(
        not_found("apps", "deployments").to_string(),
        "deployments.apps \"nginx\" not found"
    );
    let exists = ApiError::AlreadyExists {
        group: "networking.k8s.io".into(),
        resource: "ingresses".into(),
        name: "web".into(),
    };
    assert_eq!(
        exists.to_string(),
        "ingresses.networking.k8s.io \"web\" already exists"
    );
    let conflict = ApiError::Conflict {
        group: "apps".into(),
        resource: "deployments".into(),
        name: "web".into(),
        detail: "the object has been modified".into(),
    };
    assert_eq!(
        conflict.to_string(),
        "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified"
    );
}

#[test]
fn details_keep_group_and_resource_apart() {
    let status = not_found("apps", "deployments").to_status();
    assert_eq!(status["details"]["kind"], "deployments");
    assert_eq!(status["details"]["group"], "apps");
    assert_eq!(status["code"], 404);
    assert_eq!(status["reason"], "NotFound");
}
