//! A mocked Kubernetes API server for the controllers' unit tests, in the style of
//! controller-rs' `ApiServerVerifier`: the controller's client talks to a `tower-test` mock;
//! the test says how each call is answered and gets back every call made, in order, to compare
//! with the calls the reconcile must make (and no others). A mock because a unit test has no
//! API server; the same controllers run against a real kube-apiserver in `tests/kube_api.rs`.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::context::{Context, ServerSource};
use crate::metrics::Metrics;

/// One call the controller made.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The JSON body (`Null` when there is none).
    pub body: Value,
}

impl Call {
    /// `METHOD /path`, as the tests list the calls they expect.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

pub struct Verifier {
    handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
}

/// A context whose Kubernetes client is the mock (default namespace `ns`), and the verifier
/// that answers it. `server`: where the microdash server is (an unreachable address when the
/// test expects nothing to reach it).
pub fn mocked(server: ServerSource) -> (Arc<Context>, Verifier) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "ns");
    let ctx = Context::new(
        client,
        server,
        Arc::new(Metrics::default()),
        Duration::from_secs(30),
        None,
        Duration::from_secs(60),
        crate::context::DEFAULT_AGENT_CLUSTER_ROLE.into(),
    );
    (ctx, Verifier { handle })
}

/// A microdash server that is never reached (port 9, discard): a test that expects no call to
/// the server fails on a connection error if one is made.
pub fn unreachable_server() -> ServerSource {
    ServerSource::Fixed(crate::server::ServerApi::new("http://127.0.0.1:9", "token-that-is-never-sent"))
}

impl Verifier {
    /// Answers every call with `answer` until the controller's client is dropped (drop the
    /// context when the reconcile is done); the task answers the calls it saw.
    pub fn serve(mut self, answer: impl Fn(&Call) -> Response<Body> + Send + 'static) -> JoinHandle<Vec<Call>> {
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some((request, send)) = self.handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = http_body_util::BodyExt::collect(body).await.expect("a body").to_bytes();
                let call = Call {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().unwrap_or_default().to_string(),
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                };
                send.send_response(answer(&call));
                seen.push(call);
            }
            seen
        })
    }
}

/// 200 with `value` as JSON.
pub fn ok(value: &impl serde::Serialize) -> Response<Body> {
    Response::builder().body(Body::from(serde_json::to_vec(value).expect("serializes"))).expect("a response")
}

/// 404 as the API server answers it.
pub fn not_found() -> Response<Body> {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"});
    Response::builder().status(404).body(Body::from(serde_json::to_vec(&status).expect("json"))).expect("a response")
}

/// 200 with the call's own body (a server-side apply answers the object it was given).
pub fn echo(call: &Call) -> Response<Body> {
    ok(&call.body)
}

/// The object with the microdash finalizer added, as the API server answers the finalizer
/// patch of `kube::runtime::finalizer`.
pub fn with_finalizer<K: kube::Resource + serde::Serialize + Clone>(object: &K) -> Value {
    let mut object = object.clone();
    object.meta_mut().finalizers = Some(vec![super::FINALIZER.into()]);
    serde_json::to_value(object).expect("serializes")
}

/// The first reconcile of a new object (no finalizer yet) makes exactly one call: the JSON
/// patch that adds the microdash finalizer at `path`; nothing reaches the microdash server
/// before the finalizer is there (which guarantees the cleanup), and the reconcile waits for
/// the change that patch causes.
pub async fn first_reconcile_only_adds_the_finalizer<K, F, Fut>(object: K, reconcile: F, path: &str)
where
    K: kube::Resource + serde::Serialize + Clone,
    F: FnOnce(Arc<K>, Arc<Context>) -> Fut,
    Fut: std::future::Future<Output = crate::error::Result<kube::runtime::controller::Action>>,
{
    let (ctx, verifier) = mocked(unreachable_server());
    let answer = with_finalizer(&object);
    let calls = verifier.serve(move |_| ok(&answer));
    let action = reconcile(Arc::new(object), ctx.clone()).await.expect("the reconcile succeeds");
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    drop(ctx);
    let calls = calls.await.expect("the verifier ends");
    assert_eq!(calls.iter().map(Call::line).collect::<Vec<_>>(), [format!("PATCH {path}")]);
    assert!(calls[0].body.to_string().contains(super::FINALIZER), "{}", calls[0].body);
}
