//! Plays the kubelet and Job controller for build Jobs. Either the test
//! decides a Job's outcome ([`succeed`], [`fail`], [`crash`], [`hold`]), or
//! [`run`] runs the Job's container command on this machine; the outcome is
//! written to the Job's status the way the Job controller would. [`crash`],
//! [`hold`] and [`run`] also leave the Job's pod, with the status the
//! kubelet would give it, where the operator can read why.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;

/// The Job controller's labels on a Job's pods (the second is the legacy one).
const JOB_NAME_LABELS: [&str; 2] = ["batch.kubernetes.io/job-name", "job-name"];
/// What the kubelet keeps of a log for a termination message.
const LOG_TAIL_LINES: usize = 80;
const LOG_TAIL_BYTES: usize = 2048;

/// Marks the Job succeeded (`Complete` condition, completion time).
pub async fn succeed(jobs: &Api<Job>, name: &str) -> Job {
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let status = json!({"status": {
        "succeeded": 1, "active": 0, "startTime": now, "completionTime": now,
        "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": now}],
    }});
    jobs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch Job status")
}

/// Marks the Job failed with `reason` and `message`.
pub async fn fail(jobs: &Api<Job>, name: &str, reason: &str, message: &str) -> Job {
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let status = json!({"status": {
        "failed": 3, "active": 0,
        "conditions": [{"type": "Failed", "status": "True", "reason": reason, "message": message,
                        "lastTransitionTime": now}],
    }});
    jobs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch Job status")
}

/// The build pod exits with `code` after logging `log` (the build binary
/// failing), and the Job fails at its backoff limit with the message the Job
/// controller gives, which says nothing of why.
pub async fn crash(jobs: &Api<Job>, name: &str, code: i32, log: &str) -> Job {
    let job = jobs.get(name).await.expect("get Job");
    exited(jobs, &job, code, log).await;
    fail(
        jobs,
        name,
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    )
    .await
}

/// The build pod cannot start: its container waits with `reason` and
/// `message` (a Secret that is missing, an image it cannot pull). The Job
/// stays active with no ready pod since a start time so long ago that the
/// operator reports it pending at once.
pub async fn hold(jobs: &Api<Job>, name: &str, reason: &str, message: &str) -> Job {
    let job = jobs.get(name).await.expect("get Job");
    let c = container(&job);
    let state = json!({"waiting": {"reason": reason, "message": message}});
    let status = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
                        "containerStatuses": [container_status(c, state)]});
    create_pod(jobs, &job, status).await;
    let status = json!({"status": {"active": 1, "ready": 0, "startTime": "2020-01-01T00:00:00Z"}});
    jobs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch Job status")
}

/// The pod of `job` after its container exited with `code` having logged `log`.
async fn exited(jobs: &Api<Job>, job: &Job, code: i32, log: &str) -> Pod {
    let c = container(job);
    let (phase, reason) = if code == 0 {
        ("Succeeded", "Completed")
    } else {
        ("Failed", "Error")
    };
    let mut terminated = json!({"exitCode": code, "reason": reason});
    if let Some(message) = termination_message(c, code, log) {
        terminated["message"] = json!(message);
    }
    let status = json!({"phase": phase, "conditions": [{"type": "PodScheduled", "status": "True"}],
                        "containerStatuses": [container_status(c, json!({"terminated": terminated}))]});
    create_pod(jobs, job, status).await
}

/// What the kubelet makes the termination message of a container that
/// exited with `code` after logging `log` (and wrote no termination-log
/// file): with `FallbackToLogsOnError` and a failure, the log's last 80
/// lines or 2048 bytes, whichever is less; otherwise nothing.
fn termination_message(c: &Container, code: i32, log: &str) -> Option<String> {
    if code == 0 || c.termination_message_policy.as_deref() != Some("FallbackToLogsOnError") {
        return None;
    }
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
    let cut = tail.ceil_char_boundary(tail.len().saturating_sub(LOG_TAIL_BYTES));
    Some(tail[cut..].to_string())
}

fn container(job: &Job) -> &Container {
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1, "build Jobs have one container");
    &pod.containers[0]
}

fn container_status(c: &Container, state: Value) -> Value {
    json!({"name": c.name, "image": c.image, "imageID": "", "ready": false, "restartCount": 0, "state": state})
}

/// Creates a pod of `job` the way the Job controller does (its template,
/// the Job's labels, owned by the Job), named `<job>-<n>` with the first
/// free `n`, then gives it `status` the way the kubelet reports it.
async fn create_pod(jobs: &Api<Job>, job: &Job, status: Value) -> Pod {
    let job_name = job.name_any();
    let namespace = job.namespace().expect("a namespaced Job");
    let pods: Api<Pod> = Api::namespaced(jobs.clone().into_client(), &namespace);
    let template = &job.spec.as_ref().unwrap().template;
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    for label in JOB_NAME_LABELS {
        labels.insert(label.to_string(), job_name.clone());
    }
    let mut pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"labels": labels, "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "Job", "name": job_name,
            "uid": job.metadata.uid.as_deref().expect("a stored Job"), "controller": true}]},
        "spec": template.spec,
    }))
    .expect("a pod from the Job's template");
    let mut n = 0;
    let name = loop {
        let name = format!("{job_name}-{n}");
        pod.metadata.name = Some(name.clone());
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => break name,
            Err(kube::Error::Api(s)) if s.code == 409 => n += 1,
            Err(e) => panic!("create the pod: {e}"),
        }
    };
    pods.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await
    .expect("patch the pod's status")
}

/// Runs Job `name`'s single container the way a node would, with the
/// `trusty-search` binary standing in for the image: its args and env, each
/// volume mount mapped to a local directory (`mounts`: mount path → dir), and
/// the keys of the Secrets it names in `envFrom` taken from `secrets`. Leaves
/// the pod as it ended, writes the outcome to the Job's status and returns
/// the process's stderr.
pub async fn run(
    jobs: &Api<Job>,
    name: &str,
    mounts: &[(&str, &Path)],
    secrets: &HashMap<String, Vec<(String, String)>>,
) -> (Job, String) {
    let job = jobs.get(name).await.expect("get Job");
    let c = container(&job);
    // The pod's writable /tmp (its root filesystem is read-only) becomes a
    // fresh local directory, and TMPDIR points there.
    let tmp = tempfile::tempdir().expect("tmp dir for the build");
    let mut mounts: Vec<(&str, &Path)> = mounts.to_vec();
    mounts.push(("/tmp", tmp.path()));
    for m in c.volume_mounts.iter().flatten() {
        assert!(
            mounts.iter().any(|(path, _)| *path == m.mount_path),
            "no local directory given for mount {}",
            m.mount_path
        );
    }
    let local = |s: &str| -> String {
        for (path, dir) in &mounts {
            if let Some(rest) = s.strip_prefix(path)
                && (rest.is_empty() || rest.starts_with('/'))
            {
                return format!("{}{rest}", dir.display());
            }
        }
        s.to_string()
    };
    let mut cmd = tokio::process::Command::new(crate::support::process::binary());
    cmd.args(c.args.iter().flatten().map(|a| local(a)))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("TMPDIR", tmp.path());
    for from in c.env_from.iter().flatten() {
        let secret = from.secret_ref.as_ref().expect("envFrom a Secret");
        let values = secrets
            .get(&secret.name)
            .unwrap_or_else(|| panic!("Job needs Secret {} the test did not provide", secret.name));
        cmd.envs(values.iter().map(|(k, v)| (k, v)));
    }
    for e in c.env.iter().flatten() {
        cmd.env(&e.name, local(e.value.as_deref().unwrap_or("")));
    }
    let out = cmd.output().await.expect("run the build command");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let log = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
    let job = match out.status.code() {
        Some(0) => {
            exited(jobs, &job, 0, &log).await;
            succeed(jobs, name).await
        }
        code => crash(jobs, name, code.unwrap_or(128), &log).await,
    };
    (job, stderr)
}
