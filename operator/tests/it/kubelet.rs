//! Plays the kubelet and Job controller for build Jobs: no pod runs here, the
//! test decides each Job's outcome and writes it to the Job's status the way
//! the Job controller would.

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

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
