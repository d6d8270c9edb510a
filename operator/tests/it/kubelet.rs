//! Plays the kubelet and Job controller for build Jobs. Either the test
//! decides a Job's outcome ([`succeed`], [`fail`]), or [`run`] runs the Job's
//! container command on this machine; the outcome is written to the Job's
//! status the way the Job controller would.

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

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

/// Runs Job `name`'s single container the way a node would, with the
/// `trusty-search` binary standing in for the image: its args and env, each
/// volume mount mapped to a local directory (`mounts`: mount path → dir), and
/// the keys of the Secrets it names in `envFrom` taken from `secrets`. Writes
/// the outcome to the Job's status and returns the process's stderr.
pub async fn run(
    jobs: &Api<Job>,
    name: &str,
    mounts: &[(&str, &Path)],
    secrets: &HashMap<String, Vec<(String, String)>>,
) -> (Job, String) {
    let job = jobs.get(name).await.expect("get Job");
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1, "build Jobs have one container");
    let c = &pod.containers[0];
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
    let job = if out.status.success() {
        succeed(jobs, name).await
    } else {
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("build failed");
        fail(jobs, name, "BackoffLimitExceeded", last).await
    };
    (job, stderr)
}
