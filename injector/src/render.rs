//! `render`: turns an injected devfile into what an existing engine runs,
//! either plain Kubernetes objects (typed k8s-openapi structs, so the output
//! is well formed by construction) or a DevWorkspace for the DevWorkspace
//! Operator.

use std::collections::BTreeMap;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    ExecAction, HTTPGetAction, Lifecycle, LifecycleHandler, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, Secret, SecretEnvSource, SecretVolumeSource,
    SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use serde_json::{json, Value};

use crate::inject::{self, DATA_VOLUME, FILE_VARIABLES_DIR, WORKSPACED_PORT};
use crate::platform::{self, Class, Timeouts, Variables, Visibility};

/// The annotation the workspaces proxy reads to route `<port>-<name>.<zone>`.
pub const HOST_TEMPLATE_ANNOTATION: &str = "workspaces.gitlab.com/host-template";
/// UID the pod runs as (any non-root UID works: files are group-0 readable).
pub const RUN_AS_USER: i64 = 5001;
const FILE_VARIABLES_VOLUME: &str = "gl-workspace-variables-file";
const DEFAULT_DATA_SIZE: &str = "10Gi";

/// What `render` needs besides the devfile.
#[derive(Debug, Clone)]
pub struct Options {
    pub name: String,
    pub namespace: String,
    pub dns_zone: String,
    pub proxy_namespace: String,
    pub inject: inject::Options,
    /// The workspace's class: container defaults, the pod's maximum, storage.
    pub class: Class,
    /// Never render the data volume smaller than this (its current size).
    pub min_storage: Option<String>,
    /// The workspace's variables, `workspaced_token` included.
    pub variables: Variables,
    pub timeouts: Timeouts,
    pub idle_webhook: Option<String>,
    pub max_visibility: Visibility,
}

impl Options {
    /// `${PORT}-<name>.<zone>`, the form of `GL_WORKSPACE_DOMAIN_TEMPLATE`.
    pub fn domain_template(&self) -> String {
        format!("${{PORT}}-{}.{}", self.name, self.dns_zone)
    }
}

fn labels(opts: &Options) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "workspace".into()),
        ("app.kubernetes.io/instance".into(), opts.name.clone()),
        (
            "app.kubernetes.io/managed-by".into(),
            "workspace-injector".into(),
        ),
    ])
}

fn selector(opts: &Options) -> BTreeMap<String, String> {
    BTreeMap::from([("app.kubernetes.io/instance".into(), opts.name.clone())])
}

fn meta(opts: &Options, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(opts.namespace.clone()),
        labels: Some(labels(opts)),
        ..Default::default()
    }
}

fn env_secret_name(opts: &Options) -> String {
    format!("{}-env", opts.name)
}

fn file_secret_name(opts: &Options) -> String {
    format!("{}-file", opts.name)
}

/// The two Secrets that hold the workspace's variables (their only place).
fn secrets(opts: &Options, devworkspace: bool) -> Vec<Secret> {
    [
        (env_secret_name(opts), &opts.variables.env, "env"),
        (file_secret_name(opts), &opts.variables.file, "file"),
    ]
    .into_iter()
    .map(|(name, vars, mount_as)| {
        let mut metadata = meta(opts, name);
        if devworkspace {
            // The DevWorkspace Operator mounts these into the workspace's
            // containers itself (one namespace per workspace).
            let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
            labels.insert(
                "controller.devfile.io/mount-to-devworkspace".into(),
                "true".into(),
            );
            labels.insert("controller.devfile.io/watch-secret".into(), "true".into());
            let mut ann = BTreeMap::from([(
                "controller.devfile.io/mount-as".into(),
                mount_as.to_string(),
            )]);
            if mount_as == "file" {
                ann.insert(
                    "controller.devfile.io/mount-path".into(),
                    FILE_VARIABLES_DIR.into(),
                );
                ann.insert(
                    "controller.devfile.io/mount-access-mode".into(),
                    "0440".into(),
                );
            }
            metadata.annotations = Some(ann);
        }
        Secret {
            metadata,
            type_: Some("Opaque".into()),
            data: Some(
                vars.iter()
                    .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    })
    .collect()
}

fn str_list(v: Option<&Value>) -> Option<Vec<String>> {
    v.and_then(Value::as_array).map(|a| {
        a.iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .collect()
    })
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// Kubernetes volume name for a devfile volume component.
fn volume_source(opts: &Options, name: &str, volume: &Value) -> Volume {
    let mut vol = Volume {
        name: name.to_string(),
        ..Default::default()
    };
    if volume.get("ephemeral") == Some(&Value::Bool(true)) {
        vol.empty_dir = Some(EmptyDirVolumeSource::default());
    } else {
        vol.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
            claim_name: pvc_name(opts, name),
            read_only: None,
        });
    }
    vol
}

fn pvc_name(opts: &Options, volume: &str) -> String {
    if volume == DATA_VOLUME {
        format!("{}-data", opts.name)
    } else {
        format!("{}-{volume}", opts.name)
    }
}

fn container(c: &Value, is_main: bool, mounts_secret: bool) -> Container {
    let name = s(c, "name").unwrap_or_default();
    let spec = &c["container"];
    let env = spec.get("env").and_then(Value::as_array).map(|list| {
        list.iter()
            .map(|e| EnvVar {
                name: s(e, "name").unwrap_or_default(),
                value: e
                    .get("value")
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)),
                value_from: None,
            })
            .collect()
    });
    let ports: Option<Vec<ContainerPort>> =
        spec.get("endpoints").and_then(Value::as_array).map(|list| {
            list.iter()
                .filter_map(|e| {
                    let port = e.get("targetPort")?.as_i64()?;
                    let mut pname = s(e, "name").unwrap_or_default();
                    pname.truncate(15);
                    Some(ContainerPort {
                        container_port: port as i32,
                        name: Some(pname.trim_end_matches('-').to_string()),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                })
                .collect()
        });
    let mut mounts: Vec<VolumeMount> = spec
        .get("volumeMounts")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|m| {
                    let n = s(m, "name").unwrap_or_default();
                    VolumeMount {
                        mount_path: s(m, "path").unwrap_or_else(|| format!("/{n}")),
                        name: n,
                        ..Default::default()
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if mounts_secret {
        mounts.push(VolumeMount {
            name: FILE_VARIABLES_VOLUME.into(),
            mount_path: FILE_VARIABLES_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let quantity = |key: &str| s(spec, key).map(Quantity);
    let mut limits = BTreeMap::new();
    let mut requests = BTreeMap::new();
    for (key, is_limit, res) in [
        ("memoryLimit", true, "memory"),
        ("cpuLimit", true, "cpu"),
        ("memoryRequest", false, "memory"),
        ("cpuRequest", false, "cpu"),
    ] {
        if let Some(q) = quantity(key) {
            let map = if is_limit { &mut limits } else { &mut requests };
            map.insert(res.to_string(), q);
        }
    }
    // A container without requests would be scheduled with none at all.
    requests
        .entry("cpu".into())
        .or_insert_with(|| Quantity("100m".into()));
    requests
        .entry("memory".into())
        .or_insert_with(|| Quantity("256Mi".into()));
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(i32::from(WORKSPACED_PORT)),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        period_seconds: Some(10),
        failure_threshold: Some(3),
        ..Default::default()
    };
    Container {
        name,
        image: s(spec, "image"),
        image_pull_policy: Some("IfNotPresent".into()),
        command: str_list(spec.get("command")),
        args: str_list(spec.get("args")),
        env,
        ports: ports.filter(|p| !p.is_empty()),
        volume_mounts: Some(mounts),
        resources: Some(ResourceRequirements {
            limits: (!limits.is_empty()).then_some(limits),
            requests: Some(requests),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        liveness_probe: is_main.then(|| Probe {
            initial_delay_seconds: Some(10),
            ..probe("/healthz")
        }),
        readiness_probe: is_main.then(|| probe("/readyz")),
        ..Default::default()
    }
}

/// Components started by `apply` commands in `preStart`, in event order.
fn init_components(devfile: &Value) -> Vec<String> {
    let commands = devfile["commands"].as_array().cloned().unwrap_or_default();
    devfile["events"]["preStart"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|id| {
            commands
                .iter()
                .find(|c| c.get("id") == Some(id))
                .and_then(|c| s(&c["apply"], "component"))
        })
        .collect()
}

/// The `postStart` exec commands of one component as a single shell script
/// for the container's postStart hook (the devfile's order kept).
fn post_start_script(devfile: &Value, component: &str) -> Option<String> {
    let commands = devfile["commands"].as_array()?;
    let lines: Vec<String> = devfile["events"]["postStart"]
        .as_array()?
        .iter()
        .filter_map(|id| commands.iter().find(|c| c.get("id") == Some(id)))
        .filter(|c| c["exec"]["component"].as_str() == Some(component))
        .filter_map(|c| {
            let line = s(&c["exec"], "commandLine")?;
            Some(match s(&c["exec"], "workingDir") {
                Some(dir) => format!("(cd \"{dir}\" && {line})"),
                None => format!("({line})"),
            })
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// Injects the devfile, then builds the Kubernetes objects, as JSON values
/// in the order they should be applied.
pub fn kubernetes(devfile: &Value, opts: &Options) -> anyhow::Result<Vec<Value>> {
    let injected = injected(devfile, opts)?;
    let components = injected["components"].as_array().context("components")?;
    let inits = init_components(&injected);
    let mut init_containers = Vec::new();
    let mut containers = Vec::new();
    let mut volumes = vec![Volume {
        name: FILE_VARIABLES_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(file_secret_name(opts)),
            optional: Some(false),
            default_mode: Some(0o440),
            items: None,
        }),
        ..Default::default()
    }];
    let mut pvcs = Vec::new();
    let mut service_ports = Vec::new();
    for c in components {
        let name = s(c, "name").unwrap_or_default();
        if let Some(volume) = c.get("volume") {
            let vol = volume_source(opts, &name, volume);
            if vol.persistent_volume_claim.is_some() {
                let size = s(volume, "size").unwrap_or_else(|| DEFAULT_DATA_SIZE.into());
                pvcs.push(PersistentVolumeClaim {
                    metadata: meta(opts, pvc_name(opts, &name)),
                    spec: Some(PersistentVolumeClaimSpec {
                        access_modes: Some(vec!["ReadWriteOnce".into()]),
                        resources: Some(VolumeResourceRequirements {
                            requests: Some(BTreeMap::from([("storage".into(), Quantity(size))])),
                            limits: None,
                        }),
                        ..Default::default()
                    }),
                    status: None,
                });
            }
            volumes.push(vol);
            continue;
        }
        if c.get("container").is_none() {
            continue;
        }
        let is_main = c.pointer("/attributes/gl~1inject-editor") == Some(&Value::Bool(true));
        if inits.contains(&name) {
            let secret = name == inject::CLONER_COMPONENT;
            init_containers.push(container(c, false, secret));
        } else {
            for e in c["container"]["endpoints"].as_array().into_iter().flatten() {
                if e.get("exposure").and_then(Value::as_str) == Some("none") {
                    continue;
                }
                if let Some(port) = e.get("targetPort").and_then(Value::as_i64) {
                    let mut pname = s(e, "name").unwrap_or_default();
                    pname.truncate(15);
                    service_ports.push(ServicePort {
                        name: Some(pname.trim_end_matches('-').to_string()),
                        port: port as i32,
                        target_port: Some(IntOrString::Int(port as i32)),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    });
                }
            }
            let mut k = container(c, is_main, true);
            if let Some(script) = post_start_script(&injected, &name) {
                k.lifecycle = Some(Lifecycle {
                    post_start: Some(LifecycleHandler {
                        exec: Some(ExecAction {
                            command: Some(vec!["/bin/sh".into(), "-c".into(), script]),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            containers.push(k);
        }
    }

    let env_from = vec![EnvFromSource {
        secret_ref: Some(SecretEnvSource {
            name: env_secret_name(opts),
            optional: Some(false),
        }),
        ..Default::default()
    }];
    for c in init_containers.iter_mut().chain(containers.iter_mut()) {
        c.env_from = Some(env_from.clone());
    }

    let sa = ServiceAccount {
        metadata: meta(opts, opts.name.clone()),
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    let deployment = Deployment {
        metadata: meta(opts, opts.name.clone()),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(selector(opts)),
                match_expressions: None,
            },
            // The data volume is ReadWriteOnce: never two pods at once.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(opts)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(opts.name.clone()),
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS_USER),
                        run_as_group: Some(0),
                        fs_group: Some(0),
                        ..Default::default()
                    }),
                    init_containers: Some(init_containers),
                    containers,
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    };
    let mut service_meta = meta(opts, opts.name.clone());
    service_meta.annotations = Some(BTreeMap::from([(
        HOST_TEMPLATE_ANNOTATION.into(),
        format!("{{{{.port}}}}-{}.{}", opts.name, opts.dns_zone),
    )]));
    let service = Service {
        metadata: service_meta,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector(opts)),
            ports: Some(service_ports),
            ..Default::default()
        }),
        status: None,
    };
    let policy = NetworkPolicy {
        metadata: meta(opts, opts.name.clone()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector(opts)),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([(
                            "kubernetes.io/metadata.name".into(),
                            opts.proxy_namespace.clone(),
                        )])),
                        match_expressions: None,
                    }),
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([(
                            "app.kubernetes.io/name".into(),
                            "gitlab-workspaces-proxy".into(),
                        )])),
                        match_expressions: None,
                    }),
                    ip_block: None,
                }]),
                ports: None,
            }]),
            egress: None,
        }),
    };
    let mut out = vec![serde_json::to_value(&sa)?];
    for secret in secrets(opts, false) {
        out.push(serde_json::to_value(&secret)?);
    }
    for p in &pvcs {
        out.push(serde_json::to_value(p)?);
    }
    out.push(serde_json::to_value(&policy)?);
    out.push(serde_json::to_value(&service)?);
    out.push(serde_json::to_value(&deployment)?);
    Ok(out)
}

/// The devfile with the tools injected and the platform's decisions applied:
/// the class's resources, the timeouts and the exposure cap.
fn injected(devfile: &Value, opts: &Options) -> anyhow::Result<Value> {
    let mut inject_opts = opts.inject.clone();
    inject_opts.domain_template = Some(opts.domain_template());
    let mut out = inject::inject(devfile, &inject_opts)?;
    let inits = init_components(&out);
    platform::apply_class(
        &mut out,
        &opts.class,
        &inits,
        DATA_VOLUME,
        opts.min_storage.as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    platform::lower_default_exposure(
        &mut out,
        opts.max_visibility,
        &["editor-server", "workspaced"],
    );
    let mut vars = vec![
        (
            "WORKSPACED_IDLE_TIMEOUT",
            platform::go_duration(opts.timeouts.idle),
        ),
        (
            "WORKSPACED_MAX_ACTIVE",
            platform::go_duration(opts.timeouts.max_active),
        ),
        (
            "WORKSPACED_MAX_VISIBILITY",
            opts.max_visibility.as_str().to_owned(),
        ),
    ];
    if let Some(url) = &opts.idle_webhook {
        vars.push(("GL_WORKSPACE_IDLE_WEBHOOK", url.clone()));
    }
    let main = out["components"]
        .as_array_mut()
        .and_then(|list| {
            list.iter_mut()
                .find(|c| c.pointer("/attributes/gl~1inject-editor") == Some(&Value::Bool(true)))
        })
        .and_then(|c| c.pointer_mut("/container/env"))
        .and_then(Value::as_array_mut)
        .context("the injected devfile has no main container with env")?;
    for (name, value) in vars {
        main.retain(|e| e.get("name").and_then(Value::as_str) != Some(name));
        main.push(json!({"name": name, "value": value}));
    }
    Ok(out)
}

/// The variables' Secrets (mounted by the operator) and a
/// `workspace.devfile.io/v1alpha2` DevWorkspace whose template is the
/// injected devfile, with per-workspace storage.
pub fn devworkspace(devfile: &Value, opts: &Options) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for secret in secrets(opts, true) {
        out.push(serde_json::to_value(&secret)?);
    }
    out.push(devworkspace_object(devfile, opts)?);
    Ok(out)
}

fn devworkspace_object(devfile: &Value, opts: &Options) -> anyhow::Result<Value> {
    let mut template = injected(devfile, opts)?;
    let t = template
        .as_object_mut()
        .context("devfile must be a mapping")?;
    t.remove("schemaVersion");
    t.remove("metadata");
    // Variables are already substituted.
    t.remove("variables");
    // A PVC of its own, deleted with the DevWorkspace.
    let attributes = t
        .entry("attributes")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .context("attributes must be a mapping")?;
    attributes.insert(
        "controller.devfile.io/storage-type".into(),
        json!("per-workspace"),
    );
    Ok(json!({
        "apiVersion": "workspace.devfile.io/v1alpha2",
        "kind": "DevWorkspace",
        "metadata": {
            "name": opts.name,
            "namespace": opts.namespace,
            "labels": labels(opts),
        },
        "spec": {
            "started": true,
            "routingClass": "basic",
            "template": template,
        }
    }))
}

/// The `DevWorkspaceOperatorConfig` that makes the DevWorkspace Operator
/// behave as users expect: the idle timeout, the class's storage and
/// container resources, and a bound on a start that makes no progress.
pub fn operator_config(namespace: &str, class: &Class, timeouts: Timeouts) -> Value {
    let mut workspace = json!({
        "idleTimeout": platform::go_duration(timeouts.idle),
        "progressTimeout": "10m",
        "imagePullPolicy": "IfNotPresent",
        "deploymentStrategy": "Recreate",
        "defaultStorageSize": {"common": class.storage, "perWorkspace": class.storage},
        "defaultContainerResources": {
            "limits": {"cpu": class.limits.cpu, "memory": class.limits.memory},
            "requests": {"cpu": class.requests.cpu, "memory": class.requests.memory},
        },
        "containerResourceCaps": {
            "limits": {"cpu": class.max.cpu, "memory": class.max.memory},
        },
    });
    if let Some(sc) = &class.storage_class {
        workspace["storageClassName"] = json!(sc);
    }
    json!({
        "apiVersion": "controller.devfile.io/v1alpha1",
        "kind": "DevWorkspaceOperatorConfig",
        "metadata": {
            "name": "devworkspace-operator-config",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "workspace-injector"},
        },
        "config": {"workspace": workspace},
    })
}
