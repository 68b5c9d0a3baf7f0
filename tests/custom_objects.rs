//! Custom objects by name: an admin names a custom object type over gRPC
//! (`NameCustomObject`), and REST calls then name it as HubSpot's clients
//! do, `p{portalId}_{name}`, on every path family; another portal's name,
//! an unknown name or a name taken away is an unknown object type.
mod common;

use association_service::proto;
use association_service::proto::admin_config_client::AdminConfigClient;
use common::{http, TestServer};
use serde_json::{json, Value};

/// The portal REST calls act on when the service runs open.
const PORTAL: i64 = 1;

async fn name(
    server: &TestServer,
    object_type: &str,
    name: &str,
) -> proto::NameCustomObjectResponse {
    AdminConfigClient::new(server.channel().await)
        .name_custom_object(proto::NameCustomObjectRequest {
            portal_id: PORTAL,
            object_type: object_type.into(),
            name: name.into(),
        })
        .await
        .expect("NameCustomObject")
        .into_inner()
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_calls_name_custom_objects_by_their_fully_qualified_name() {
    let server = TestServer::start("sqlite", |_| {}).await;
    let addr = server.http_addr;
    let named = name(&server, "2-77", "Cars").await;
    assert_eq!(
        named.object,
        Some(proto::CustomObject {
            object_type_id: "2-77".into(),
            name: "cars".into(),
            fully_qualified_name: "p1_cars".into(),
        })
    );
    assert_eq!(named.previous_name, "");

    // Create and read by name, in any case; the answers carry the id.
    let inputs = json!({"inputs": [{"from": {"id": "5"}, "to": {"id": "9"}}]}).to_string();
    let made = http(
        addr,
        "POST",
        "/crm/v4/associations/p1_cars/contacts/batch/associate/default",
        Some(&inputs),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.body);
    let read = http(
        addr,
        "GET",
        "/crm/v4/objects/P1_Cars/5/associations/contacts",
        None,
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(json_of(&read.body)["results"][0]["toObjectId"], json!("9"));
    let batch = http(
        addr,
        "POST",
        "/crm/associations/2026-03/contacts/p1_cars/batch/read",
        Some(r#"{"inputs":[{"id":"9"}]}"#),
    )
    .await;
    assert_eq!(batch.status, 200, "{}", batch.body);
    assert_eq!(
        json_of(&batch.body)["results"][0]["to"][0]["toObjectId"],
        json!("5")
    );
    // The objects API, its associations= list and Limits Tracking.
    let object = http(
        addr,
        "GET",
        "/crm/v3/objects/contacts/9?associations=p1_cars,companies",
        None,
    )
    .await;
    assert_eq!(object.status, 200, "{}", object.body);
    assert_eq!(
        json_of(&object.body)["associations"]["p1_cars"]["results"][0]["id"],
        json!("5")
    );
    let object = http(addr, "GET", "/crm/objects/2026-03/p1_cars/5", None).await;
    assert_eq!(object.status, 200, "{}", object.body);
    assert_eq!(json_of(&object.body)["id"], json!("5"));
    let tracking = http(
        addr,
        "GET",
        "/crm/v3/limits/associations/records/p1_cars/contacts",
        None,
    )
    .await;
    assert_eq!(tracking.status, 200, "{}", tracking.body);

    // Another portal's name, a name no type has: unknown object types.
    for path in [
        "/crm/v4/objects/p2_cars/5/associations/contacts",
        "/crm/v4/objects/p1_boats/5/associations/contacts",
    ] {
        let refused = http(addr, "GET", path, None).await;
        assert_eq!(refused.status, 400, "{path}: {}", refused.body);
        assert_eq!(
            json_of(&refused.body)["subCategory"],
            json!("crm.associations.INVALID_OBJECT_TYPE"),
            "{path}"
        );
    }

    // Renamed: the new name works at once on this replica, the old does not.
    let renamed = name(&server, "2-77", "autos").await;
    assert_eq!(renamed.previous_name, "cars");
    let old = http(
        addr,
        "GET",
        "/crm/v4/objects/p1_cars/5/associations/contacts",
        None,
    )
    .await;
    assert_eq!(old.status, 400, "{}", old.body);
    let new = http(
        addr,
        "GET",
        "/crm/v4/objects/p1_autos/5/associations/contacts",
        None,
    )
    .await;
    assert_eq!(new.status, 200, "{}", new.body);

    // Listed; a name another type has is refused with ALREADY_EXISTS.
    let mut admin = AdminConfigClient::new(server.channel().await);
    let listed = admin
        .list_custom_objects(proto::ListCustomObjectsRequest { portal_id: PORTAL })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.objects,
        vec![proto::CustomObject {
            object_type_id: "2-77".into(),
            name: "autos".into(),
            fully_qualified_name: "p1_autos".into(),
        }]
    );
    let taken = admin
        .name_custom_object(proto::NameCustomObjectRequest {
            portal_id: PORTAL,
            object_type: "2-78".into(),
            name: "AUTOS".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), tonic::Code::AlreadyExists, "{taken:?}");
    assert_eq!(
        taken.message(),
        "The custom object name 'autos' already names 2-77"
    );
    server.stop().await;
}
