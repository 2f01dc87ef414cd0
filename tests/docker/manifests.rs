//! The compose file, the Kubernetes manifests and the Dockerfile read as their tools
//! would, and checked against each other and against the files they name: a service
//! name, port, mounted file or image that drifts in one of them fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use crate::files::{
    docker, dockerfile_final_stage, environment, instructions, of_kind, read, strings, text,
    toml_key, weir_check, yaml,
};

/// Where the image reads its configuration (its CMD).
const CONFIG_PATH: &str = "/etc/weir/weir.toml";

/// What the Dockerfile's runtime stage promises: ports, user, configuration path, and
/// where it installs the scripts of `docker/`.
struct Image {
    exposed: BTreeSet<u16>,
    uid: u64,
    /// `docker/<script>` -> path in the image.
    scripts: BTreeMap<String, String>,
    healthcheck: String,
}

fn image() -> Image {
    let stage = dockerfile_final_stage();
    let exposed = instructions(&stage, "EXPOSE")
        .iter()
        .flat_map(|ports| ports.split_whitespace())
        .map(|p| p.parse().expect("an EXPOSE port"))
        .collect();
    let user = instructions(&stage, "USER").pop().expect("a USER");
    let uid = user.split(':').next().and_then(|u| u.parse().ok());
    let uid = uid.expect("USER is numeric, so runAsNonRoot can check it");
    assert_ne!(uid, 0, "the image runs as root");
    let scripts = instructions(&stage, "COPY")
        .iter()
        .filter_map(|args| {
            let mut words = args.split_whitespace();
            let source = words.next()?.strip_prefix("docker/")?;
            Some((source.to_owned(), words.next()?.to_owned()))
        })
        .collect();
    let cmd = instructions(&stage, "CMD").pop().expect("a CMD");
    let cmd: Vec<String> = serde_json::from_str(cmd).expect("CMD in exec form");
    assert_eq!(cmd, ["--config", CONFIG_PATH]);
    let check = instructions(&stage, "HEALTHCHECK")
        .pop()
        .expect("a HEALTHCHECK");
    let check = check.split_once("CMD").expect("HEALTHCHECK CMD").1;
    let check: Vec<String> = serde_json::from_str(check.trim()).expect("exec form");
    Image {
        exposed,
        uid,
        scripts,
        healthcheck: check[0].clone(),
    }
}

/// The container port of a compose `ports:` entry (`[ip:]host:container`).
fn container_port(entry: &Value) -> u16 {
    let entry = text(entry);
    let port = entry.rsplit(':').next().unwrap_or(&entry);
    port.parse().expect("a container port")
}

/// The `./file:/target[:ro]` bind mounts of a service, as (file, target).
fn bind_mounts(service: &Value) -> Vec<(String, String)> {
    strings(&service["volumes"])
        .iter()
        .filter_map(|v| {
            let (source, rest) = v.split_once(':')?;
            let source = source.strip_prefix("./")?;
            Some((source.to_owned(), rest.split(':').next()?.to_owned()))
        })
        .collect()
}

fn assert_executable(file: &str) {
    let mode = std::fs::metadata(docker(file))
        .expect(file)
        .permissions()
        .mode();
    assert!(mode & 0o111 != 0, "docker/{file} is not executable");
}

#[test]
fn compose_file_agrees_with_the_scripts_and_the_image() {
    let compose = yaml("docker-compose.yml").remove(0);
    let services = compose["services"].as_object().expect("services");
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(["primary", "replica", "weir"]));
    let (primary, replica, weir) = (
        &services["primary"],
        &services["replica"],
        &services["weir"],
    );
    assert_eq!(primary["image"], "postgres:15");
    assert_eq!(replica["image"], "postgres:15");

    // Mounted files exist; named volumes are declared.
    let declared: BTreeSet<String> = compose["volumes"]
        .as_object()
        .map(|v| v.keys().cloned().collect())
        .unwrap_or_default();
    for (name, service) in services {
        for (file, _) in bind_mounts(service) {
            assert!(
                docker(&file).is_file(),
                "{name} mounts missing docker/{file}"
            );
        }
        for volume in strings(&service["volumes"]) {
            if !volume.starts_with('.') && !volume.starts_with('/') {
                let source = volume.split(':').next().unwrap_or_default();
                assert!(
                    declared.contains(source),
                    "{name}: volume {source} undeclared"
                );
            }
        }
    }
    let init = bind_mounts(primary);
    let init = init
        .iter()
        .find(|(f, _)| f == "primary-init.sh")
        .expect("init hook");
    assert!(
        init.1.starts_with("/docker-entrypoint-initdb.d/"),
        "{init:?}"
    );
    assert!(
        init.1.ends_with(".sh"),
        "the image runs only *.sh hooks: {init:?}"
    );
    let entry = bind_mounts(replica);
    let entry = entry
        .iter()
        .find(|(f, _)| f == "replica-entrypoint.sh")
        .expect("mount");
    assert_eq!(
        strings(&replica["entrypoint"]),
        std::slice::from_ref(&entry.1)
    );
    for script in [
        "primary-init.sh",
        "replica-entrypoint.sh",
        "healthcheck.sh",
        "drain.sh",
    ] {
        assert_executable(script);
    }

    // The replica clones the primary service, as the roles primary-init.sh makes.
    let (p_env, r_env) = (environment(primary), environment(replica));
    assert_eq!(r_env["PRIMARY_HOST"], "primary");
    assert_eq!(r_env["REPLICATION_USER"], p_env["REPLICATION_USER"]);
    assert_eq!(r_env["REPLICATION_PASSWORD"], p_env["REPLICATION_PASSWORD"]);
    assert!(r_env.contains_key("PGDATA") && r_env.contains_key("REPLICA_NAME"));

    // weir: built from docker/Dockerfile, its weir.toml where the image reads it, the
    // ports the image exposes, hosts that are the two services.
    assert_eq!(weir["build"]["context"], "..");
    let dockerfile = text(&weir["build"]["dockerfile"]);
    assert!(
        docker(&format!("../{dockerfile}")).is_file(),
        "{dockerfile}"
    );
    assert_eq!(
        bind_mounts(weir),
        [("weir.toml".to_owned(), CONFIG_PATH.to_owned())]
    );
    let published: BTreeSet<u16> = weir["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(container_port)
        .collect();
    assert_eq!(published, image().exposed);
    let toml = read("weir.toml");
    let pg_port = &r_env["PRIMARY_PORT"];
    let hosts: Vec<String> = toml_key(&toml, "databases[0].hosts");
    assert_eq!(
        hosts,
        [format!("primary:{pg_port}"), format!("replica:{pg_port}")]
    );
    assert_eq!(
        toml_key::<String>(&toml, "databases[0].name"),
        p_env["APP_DB"]
    );
    assert_eq!(
        toml_key::<String>(&toml, "databases[0].routing"),
        "read_write"
    );
    assert_eq!(toml_key::<String>(&toml, "listen.addr"), "0.0.0.0:6432");
    assert_eq!(toml_key::<String>(&toml, "metrics.listen"), "0.0.0.0:9930");
    // weir logs in to the servers as the role primary-init.sh made, with its password.
    let w_env = environment(weir);
    assert_eq!(
        toml_key::<String>(&toml, "users[0].name"),
        p_env["APP_USER"]
    );
    assert_eq!(w_env["WEIR_USERS__0__PASSWORD"], p_env["APP_PASSWORD"]);
    weir_check("docker/weir.toml with compose's environment", &toml, &w_env);
    let k8s_image = kubernetes_container()["image"].clone();
    assert_eq!(
        weir["image"], k8s_image,
        "compose and Kubernetes name one image"
    );
}

/// The weir container of the Deployment.
fn kubernetes_container() -> Value {
    let docs = kubernetes();
    let deployment = of_kind(&docs, "Deployment");
    deployment["spec"]["template"]["spec"]["containers"][0].clone()
}

/// Every manifest that kustomization.yaml lists, which must be every one there is.
fn kubernetes() -> Vec<Value> {
    let kustomization = yaml("kubernetes/kustomization.yaml").remove(0);
    let listed: BTreeSet<String> = strings(&kustomization["resources"]).into_iter().collect();
    let present: BTreeSet<String> = std::fs::read_dir(docker("kubernetes"))
        .expect("docker/kubernetes")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present, "kustomization.yaml lists every manifest");
    listed
        .iter()
        .flat_map(|f| yaml(&format!("kubernetes/{f}")))
        .collect()
}

#[test]
fn kubernetes_manifests_agree_with_each_other_and_the_image() {
    let docs = kubernetes();
    let image = image();
    let (deployment, service) = (of_kind(&docs, "Deployment"), of_kind(&docs, "Service"));
    let (config_map, secret) = (of_kind(&docs, "ConfigMap"), of_kind(&docs, "Secret"));
    let pdb = of_kind(&docs, "PodDisruptionBudget");
    let spec = &deployment["spec"];
    let pod = &spec["template"]["spec"];
    let container = &pod["containers"][0];
    assert!(spec["replicas"].as_u64().expect("replicas") >= 2);

    // Selectors pick the pods the Deployment makes.
    let labels = spec["template"]["metadata"]["labels"]
        .as_object()
        .expect("labels");
    for selector in [
        &spec["selector"]["matchLabels"],
        &service["spec"]["selector"],
        &pdb["spec"]["selector"]["matchLabels"],
    ] {
        for (k, v) in selector.as_object().expect("a selector") {
            assert_eq!(labels.get(k), Some(v), "selector {k}={v} matches no pod");
        }
    }

    // Ports: the image's, named, and the Service's target.
    let ports: BTreeMap<String, u16> = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                text(&p["name"]),
                p["containerPort"].as_u64().expect("port") as u16,
            )
        })
        .collect();
    assert_eq!(
        ports.values().copied().collect::<BTreeSet<_>>(),
        image.exposed
    );
    let service_port = &service["spec"]["ports"][0];
    assert_eq!(service_port["port"], 6432);
    assert_eq!(ports.get(&text(&service_port["targetPort"])), Some(&6432));
    for probe in ["readinessProbe", "livenessProbe"] {
        let port = text(&container[probe]["httpGet"]["port"]);
        assert_eq!(ports.get(&port), Some(&9930), "{probe} on the metrics port");
    }
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"],
        "/health/live"
    );

    // Non-root, as the image's user.
    let security = &pod["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"].as_u64(), Some(image.uid));
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert!(container["resources"]["requests"].is_object(), "resources");

    // The scripts the hooks run are the ones the image installs.
    let pre_stop = strings(&container["lifecycle"]["preStop"]["exec"]["command"]);
    assert_eq!(pre_stop, [image.scripts["drain.sh"].clone()]);
    assert_eq!(image.healthcheck, image.scripts["healthcheck.sh"]);

    // Configuration: the ConfigMap's weir.toml mounted where the image reads it.
    let mount = &container["volumeMounts"][0];
    let volume = pod["volumes"].as_array().expect("volumes").iter();
    let volume = volume
        .clone()
        .find(|v| v["name"] == mount["name"])
        .expect("volume");
    assert_eq!(volume["configMap"]["name"], config_map["metadata"]["name"]);
    assert_eq!(
        format!("{}/weir.toml", text(&mount["mountPath"])),
        CONFIG_PATH
    );
    assert_eq!(strings(&container["args"]), ["--config", CONFIG_PATH]);
    let toml = text(&config_map["data"]["weir.toml"]);
    assert_eq!(toml_key::<String>(&toml, "listen.addr"), "0.0.0.0:6432");
    assert_eq!(toml_key::<String>(&toml, "metrics.listen"), "0.0.0.0:9930");

    // Passwords: from keys the Secret has, into a configuration weir accepts.
    let secrets = secret["stringData"].as_object().expect("stringData");
    let mut env = BTreeMap::new();
    for var in container["env"].as_array().expect("env") {
        let value = match &var["valueFrom"]["secretKeyRef"] {
            Value::Object(r) => {
                assert_eq!(r["name"], secret["metadata"]["name"]);
                let key = text(&r["key"]);
                text(
                    secrets
                        .get(&key)
                        .unwrap_or_else(|| panic!("no {key} in the Secret")),
                )
            }
            _ => text(&var["value"]),
        };
        env.insert(text(&var["name"]), value);
    }
    weir_check(
        "the ConfigMap's weir.toml with the Deployment's environment",
        &toml,
        &env,
    );
    let admins: Vec<String> = toml_key(&toml, "admin.users");
    assert!(
        admins.contains(&env["DRAIN_USER"]),
        "the preStop hook's user is an admin"
    );
    let admin_index = (0..8)
        .find(|i| toml_key::<String>(&toml, &format!("users[{i}].name")) == env["DRAIN_USER"]);
    let admin_password = &env[&format!("WEIR_USERS__{}__PASSWORD", admin_index.expect("admin"))];
    assert_eq!(
        &env["PGPASSWORD"], admin_password,
        "the hook logs in with the admin's password"
    );

    // The grace period covers the hook and weir's own shutdown.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace period");
    let shutdown: String = toml_key(&toml, "listen.shutdown_timeout");
    let shutdown: u64 = shutdown.trim_end_matches('s').parse().expect("seconds");
    assert!(
        grace > shutdown + 25,
        "{grace} s leaves no time for preStop (25 s) and shutdown ({shutdown} s)"
    );
}
