//! `deploy/agent-daemonset.yaml`: parses, runs on every node with the host's view and the
//! least privilege, and configures the agent with flags and variables the agent accepts.
//! (`kubectl apply --dry-run=server -f deploy/agent-daemonset.yaml` checks the schema against
//! a real API server where one is available.)

use std::collections::BTreeMap;

use clap::{CommandFactory, Parser};
use microdash_agent::config::{Cli, Config, FileConfig, Transport, parse_bytes};
use serde_json::Value;

const MANIFEST: &str = include_str!("../../deploy/agent-daemonset.yaml");

fn documents() -> Vec<Value> {
    serde_saphyr::from_multiple(MANIFEST).expect("the manifest is valid YAML")
}

fn daemonset() -> Value {
    documents().into_iter().find(|d| d["kind"] == "DaemonSet").expect("a DaemonSet")
}

fn pod_spec() -> Value {
    daemonset()["spec"]["template"]["spec"].clone()
}

fn agent_container() -> Value {
    let containers = pod_spec()["containers"].as_array().unwrap().clone();
    assert_eq!(containers.len(), 1);
    containers[0].clone()
}

/// `--flag=value` arguments as a map.
fn args() -> BTreeMap<String, String> {
    agent_container()["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let (flag, value) = a.as_str().unwrap().split_once('=').expect("--flag=value");
            (flag.to_owned(), value.to_owned())
        })
        .collect()
}

#[test]
fn namespace_service_account_and_daemonset_belong_together() {
    let docs = documents();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"]);
    let namespace = docs[0]["metadata"]["name"].as_str().unwrap();
    assert_eq!(
        docs[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "privileged",
        "host namespaces and hostPath volumes need the privileged Pod Security level"
    );
    for doc in [&docs[1], &docs[4]] {
        assert_eq!(doc["metadata"]["namespace"], namespace, "{}", doc["kind"]);
    }
    // Pod discovery: the agent's account may get and list pods, nothing else.
    let (role, binding) = (&docs[2], &docs[3]);
    assert_eq!(
        role["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}])
    );
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": docs[1]["metadata"]["name"], "namespace": namespace}])
    );
    let ds = daemonset();
    assert_eq!(ds["apiVersion"], "apps/v1");
    let selector = &ds["spec"]["selector"]["matchLabels"];
    let labels = &ds["spec"]["template"]["metadata"]["labels"];
    for (key, value) in selector.as_object().unwrap() {
        assert_eq!(&labels[key], value, "the selector matches the pod template's labels");
    }
    assert_eq!(pod_spec()["serviceAccountName"], docs[1]["metadata"]["name"]);
    // Its token is mounted for pod discovery; the node to list is the pod's own.
    assert_eq!(pod_spec()["automountServiceAccountToken"], true);
}

#[test]
fn it_runs_on_every_node_with_the_hosts_pids_and_network() {
    let spec = pod_spec();
    assert_eq!(spec["hostPID"], true);
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["dnsPolicy"], "ClusterFirstWithHostNet", "hostNetwork still resolves Services");
    let tolerations = spec["tolerations"].as_array().unwrap();
    assert!(
        tolerations.iter().any(|t| t["operator"] == "Exists" && t.get("key").is_none() && t.get("effect").is_none()),
        "one toleration for every taint: {tolerations:?}"
    );
}

#[test]
fn the_host_proc_and_root_are_mounted_read_only_where_the_flags_point() {
    let spec = pod_spec();
    let container = agent_container();
    let args = args();
    let volumes: BTreeMap<&str, &Value> =
        spec["volumes"].as_array().unwrap().iter().map(|v| (v["name"].as_str().unwrap(), v)).collect();
    let mounts = container["volumeMounts"].as_array().unwrap();
    let mount_at = |path: &str| -> &Value {
        mounts.iter().find(|m| m["mountPath"] == path).unwrap_or_else(|| panic!("nothing mounted at {path}"))
    };
    for (flag, host_path) in [("--proc-root", "/proc"), ("--root", "/")] {
        let mount = mount_at(&args[flag]);
        assert_eq!(mount["readOnly"], true, "{flag}");
        let volume = volumes[mount["name"].as_str().unwrap()];
        assert_eq!(volume["hostPath"]["path"], host_path, "{flag}");
    }
    // The spool is the one writable place, and bounded below the volume's own limit.
    let spool_dir = &args["--spool-dir"];
    let spool = mounts
        .iter()
        .find(|m| spool_dir.starts_with(m["mountPath"].as_str().unwrap()) && m["readOnly"] != true)
        .expect("a writable volume holds the spool");
    let volume = volumes[spool["name"].as_str().unwrap()];
    let limit = volume["emptyDir"]["sizeLimit"].as_str().expect("an emptyDir with a sizeLimit");
    let limit = parse_bytes(&format!("{limit}B")).unwrap();
    let env = env();
    let bound = parse_bytes(&env["MICRODASH_AGENT_SPOOL_MAX_BYTES"]).unwrap();
    assert!(bound < limit, "a full spool ({bound} B) must not get the pod evicted ({limit} B)");
}

#[test]
fn least_privilege_non_root_read_only_no_capabilities_small_resources() {
    let spec = pod_spec();
    let pod = &spec["securityContext"];
    assert_eq!(pod["runAsNonRoot"], true);
    assert!(pod["runAsUser"].as_u64().unwrap() > 0);
    assert_eq!(pod["seccompProfile"]["type"], "RuntimeDefault");
    let container = agent_container();
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(security.get("privileged").is_none_or(|p| *p == Value::Bool(false)));
    let resources = &container["resources"];
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(resources[kind][resource].is_string(), "{kind}.{resource} is set");
        }
    }
    let memory_limit = parse_bytes(&format!("{}B", resources["limits"]["memory"].as_str().unwrap())).unwrap();
    assert!(memory_limit <= 128 << 20, "a small limit: {memory_limit}");
}

fn env() -> BTreeMap<String, String> {
    agent_container()["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let value = match e.get("value") {
                Some(value) => value.as_str().unwrap().to_owned(),
                None => format!("<from {}>", e["valueFrom"]),
            };
            (e["name"].as_str().unwrap().to_owned(), value)
        })
        .collect()
}

#[test]
fn the_token_comes_from_a_secret_and_the_host_label_from_the_node_name() {
    let container = agent_container();
    let env = container["env"].as_array().unwrap();
    let var = |name: &str| env.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("{name} is set"));
    let token = var("MICRODASH_AGENT_TOKEN");
    assert!(token.get("value").is_none(), "no token in the manifest");
    assert_eq!(token["valueFrom"]["secretKeyRef"]["key"], "token");
    assert_eq!(var("MICRODASH_AGENT_HOST_LABEL")["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
    // Pod discovery lists the pods of the agent's own node.
    assert_eq!(var("MICRODASH_AGENT_KUBE_NODE")["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
}

#[test]
fn the_agent_accepts_the_manifests_flags_and_variables() {
    // Every variable is one the agent reads.
    let known: Vec<String> =
        Cli::command().get_arguments().filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned())).collect();
    let env = env();
    for name in env.keys() {
        assert!(known.contains(name), "{name} is not an agent variable ({known:?})");
    }
    // And the whole configuration resolves: the args as flags, the plain variables as flags too
    // (without touching this process's environment), secrets replaced by a stand-in.
    let mut argv = vec!["microdash-agent".to_owned()];
    argv.extend(agent_container()["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()));
    for arg in Cli::command().get_arguments() {
        if let Some(name) = arg.get_env().map(|e| e.to_string_lossy().into_owned())
            && let Some(value) = env.get(&name)
        {
            let value = if value.starts_with("<from") { "stand-in".to_owned() } else { value.clone() };
            argv.push(format!("--{}={value}", arg.get_long().unwrap()));
        }
    }
    // What Kubernetes sets in every pod (KUBERNETES_SERVICE_HOST and _PORT), as a flag.
    argv.push("--kube-api=https://10.96.0.1:443".to_owned());
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let config = Config::resolve(cli, FileConfig::default(), || Some("node".into())).unwrap();
    assert_eq!(config.kube.as_ref().map(|k| k.node.as_str()), Some("stand-in"));
    assert!(matches!(config.transport, Some(Transport::Http { .. })));
    assert_eq!(config.root.as_deref(), Some(std::path::Path::new("/host/root")));
    assert_eq!(config.proc_root, std::path::Path::new("/host/proc"));
}
