//! Why a build Job's pod failed or has not started, read from the pod
//! itself: the Job's own condition says only `BackoffLimitExceeded`, and a
//! pod that cannot start leaves the Job merely active, while the pod's
//! status names the cause (its termination message, a waiting reason, the
//! scheduler's verdict).

use crate::status::truncate;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use kube::{
    Client, ResourceExt,
    api::{Api, ListParams},
};

/// The label the Job controller puts on every pod of a Job (beside the
/// legacy `job-name`, which it still sets too).
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// Longest reason kept, in bytes: it shares the Index condition's message
/// (1024 bytes) with the Job's name, its own message and what to do next.
pub const REASON_MAX: usize = 480;
/// Lines of a termination message kept: the build's last log lines, the
/// last of which is its `error: …` line.
const TAIL_LINES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum PodsError {
    #[error("listing the pods of Job {namespace}/{job}: {source}")]
    List {
        namespace: String,
        job: String,
        #[source]
        source: kube::Error,
    },
}

impl PodsError {
    /// The operator's role does not grant `list pods` (one from before it read them).
    pub fn is_forbidden(&self) -> bool {
        match self {
            PodsError::List { source, .. } => matches!(source, kube::Error::Api(s) if s.code == 403),
        }
    }
}

/// What a build pod says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodReason {
    pub pod: String,
    /// Short and on one line, at most [`REASON_MAX`] bytes.
    pub reason: String,
}

/// What the newest pod of Job `job` in `namespace` that says anything says;
/// `None` when none does (no pod yet, or all gone with the Job's TTL).
pub async fn job_pod_reason(client: Client, namespace: &str, job: &str) -> Result<Option<PodReason>, PodsError> {
    let api: Api<Pod> = Api::namespaced(client, namespace);
    let selector = format!("{JOB_NAME_LABEL}={job}");
    let pods = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| PodsError::List {
            namespace: namespace.to_string(),
            job: job.to_string(),
            source,
        })?;
    Ok(newest_reason(&pods.items))
}

/// [`pod_reason`] of the newest pod that has one: a Job's retry pod replaces
/// the one before it, so the newest tells the latest story.
pub fn newest_reason(pods: &[Pod]) -> Option<PodReason> {
    let mut pods: Vec<&Pod> = pods.iter().collect();
    pods.sort_by(|a, b| {
        let key = |p: &Pod| (p.metadata.creation_timestamp.as_ref().map(|t| t.0), p.name_any());
        key(b).cmp(&key(a))
    });
    pods.into_iter().find_map(|p| {
        Some(PodReason {
            pod: p.name_any(),
            reason: pod_reason(p)?,
        })
    })
}

/// The most specific thing `pod`'s status says about why it failed or does
/// not run, most telling first: a container's termination message (with
/// `terminationMessagePolicy: FallbackToLogsOnError`, the tail of its log),
/// a waiting container's reason (`CreateContainerConfigError`,
/// `ImagePullBackOff`, …), the pod's own reason (`Evicted`), the
/// scheduler's (`PodScheduled=False`), and last a bare exit code.
pub fn pod_reason(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let containers = status.container_statuses.as_deref().unwrap_or_default();
    let terminated = || containers.iter().filter_map(|c| c.state.as_ref()?.terminated.as_ref());
    let text = terminated()
        .find(|t| t.message.as_deref().is_some_and(|m| !clean(m).trim().is_empty()))
        .map(ended)
        .or_else(|| {
            containers.iter().find_map(|c| {
                let waiting = c.state.as_ref()?.waiting.as_ref()?;
                reason_message(waiting.reason.as_deref(), waiting.message.as_deref())
            })
        })
        .or_else(|| reason_message(status.reason.as_deref(), status.message.as_deref()))
        .or_else(|| {
            let scheduled = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
            reason_message(scheduled.reason.as_deref(), scheduled.message.as_deref())
        })
        .or_else(|| terminated().next().map(ended))?;
    Some(truncate(text, REASON_MAX))
}

/// `OOMKilled, exit code 137: <log tail>`; the reason `Error` says nothing
/// the exit code does not.
fn ended(t: &ContainerStateTerminated) -> String {
    let code = match t.reason.as_deref().filter(|r| !r.is_empty() && *r != "Error") {
        Some(reason) => format!("{reason}, exit code {}", t.exit_code),
        None => format!("exit code {}", t.exit_code),
    };
    let budget = REASON_MAX.saturating_sub(code.len() + 2);
    match t
        .message
        .as_deref()
        .map(|m| log_tail(m, budget))
        .filter(|m| !m.is_empty())
    {
        Some(tail) => format!("{code}: {tail}"),
        None => code,
    }
}

/// `reason: message` on one line, or whichever of them there is.
fn reason_message(reason: Option<&str>, message: Option<&str>) -> Option<String> {
    let flat = |s: Option<&str>| {
        let s = one_line(s?);
        (!s.is_empty()).then_some(s)
    };
    match (flat(reason), flat(message)) {
        (Some(r), Some(m)) => Some(format!("{r}: {m}")),
        (Some(s), None) | (None, Some(s)) => Some(s),
        (None, None) => None,
    }
}

/// The last [`TAIL_LINES`] non-blank lines of a log, as many as fit in
/// `max` bytes (the last one always, truncated when alone too long), joined
/// on one line.
fn log_tail(log: &str, max: usize) -> String {
    const SEP: &str = " | ";
    let log = clean(log);
    let mut tail: Vec<&str> = Vec::new();
    let mut len = 0;
    for line in log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .rev()
        .take(TAIL_LINES)
    {
        let grown = len + line.len() + if tail.is_empty() { 0 } else { SEP.len() };
        if !tail.is_empty() && grown > max {
            break;
        }
        tail.push(line);
        len = grown;
    }
    tail.reverse();
    truncate(tail.join(SEP), max)
}

fn one_line(s: &str) -> String {
    clean(s).split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `s` without terminal colour codes (an older build image logged with them
/// to a pipe too) and other control characters but newlines.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters… intermediates… final byte (@ to ~).
            if chars.next_if_eq(&'[').is_some() {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else if c == '\n' || c == '\t' || !c.is_control() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pod(name: &str, created: &str, status: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "status": status,
        }))
        .unwrap()
    }

    fn container(state: Value) -> Value {
        json!({"name": "build", "image": "img", "imageID": "", "ready": false, "restartCount": 0, "state": state})
    }

    fn reason_of(status: Value) -> Option<String> {
        pod_reason(&pod("p", "2026-03-01T10:00:00Z", status))
    }

    #[test]
    fn a_terminated_container_tells_the_tail_of_its_log() {
        let log = "2026-03-01T10:00:00Z  INFO starting\n\
                   \u{1b}[2m2026-03-01T10:00:01Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m cloning https://github.com/tokio-rs/tokio\n\
                   2026-03-01T10:00:02Z  INFO walked 0 files\n\n\
                   error: refusing to publish an empty index: 0 files under /source/app\n";
        let reason = reason_of(json!({"phase": "Failed", "containerStatuses": [container(json!(
            {"terminated": {"exitCode": 1, "reason": "Error", "message": log}}))]}));
        assert_eq!(
            reason.as_deref(),
            Some(
                "exit code 1: 2026-03-01T10:00:01Z  INFO cloning https://github.com/tokio-rs/tokio | \
                 2026-03-01T10:00:02Z  INFO walked 0 files | \
                 error: refusing to publish an empty index: 0 files under /source/app"
            )
        );
        let oom = reason_of(json!({"containerStatuses": [container(json!(
            {"terminated": {"exitCode": 137, "reason": "OOMKilled", "message": "embedding 10000 chunks\n"}}))]}));
        assert_eq!(oom.as_deref(), Some("OOMKilled, exit code 137: embedding 10000 chunks"));
    }

    #[test]
    fn a_container_that_cannot_start_tells_why_it_waits() {
        let reason = reason_of(json!({"phase": "Pending", "containerStatuses": [container(json!(
            {"waiting": {"reason": "CreateContainerConfigError",
                         "message": "secret \"trusty-search-store\" not found"}}))]}));
        assert_eq!(
            reason.as_deref(),
            Some("CreateContainerConfigError: secret \"trusty-search-store\" not found")
        );
        let pull = reason_of(json!({"containerStatuses": [container(json!(
            {"waiting": {"reason": "ImagePullBackOff"}}))]}));
        assert_eq!(pull.as_deref(), Some("ImagePullBackOff"));
    }

    #[test]
    fn an_unschedulable_pod_tells_what_the_scheduler_said() {
        let reason = reason_of(json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/3 nodes are available: 3 Insufficient memory.\npreemption: 0/3 nodes are available."}]}));
        assert_eq!(
            reason.as_deref(),
            Some(
                "Unschedulable: 0/3 nodes are available: 3 Insufficient memory. \
                 preemption: 0/3 nodes are available."
            )
        );
        let evicted = reason_of(json!({"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: memory.",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [container(json!({"terminated": {"exitCode": 137, "reason": "Error"}}))]}));
        assert_eq!(
            evicted.as_deref(),
            Some("Evicted: The node was low on resource: memory."),
            "the pod's reason says more than a bare exit code"
        );
        let killed = reason_of(json!({"containerStatuses": [container(json!(
            {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}))]}));
        assert_eq!(killed.as_deref(), Some("OOMKilled, exit code 137"));
    }

    #[test]
    fn a_pod_that_says_nothing_gives_no_reason() {
        assert_eq!(
            pod_reason(&serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap()),
            None
        );
        assert_eq!(reason_of(json!({"phase": "Pending"})), None);
        assert_eq!(
            reason_of(json!({"phase": "Running",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [container(json!({"running": {}}))]})),
            None
        );
        assert_eq!(
            reason_of(json!({"containerStatuses": [container(json!({"waiting": {"reason": " ", "message": ""}}))]})),
            None
        );
        assert_eq!(newest_reason(&[]), None);
    }

    #[test]
    fn a_long_log_tail_is_cut_at_a_char_boundary() {
        // One 3000-byte line of 3-byte characters: kept alone, cut to fit.
        let line = format!("error: {}", "é€".repeat(600));
        let log = format!("earlier line\n{line}\n");
        let reason = reason_of(json!({"containerStatuses": [container(json!(
            {"terminated": {"exitCode": 1, "message": log}}))]}))
        .unwrap();
        assert!(reason.len() <= REASON_MAX, "{}", reason.len());
        assert!(reason.starts_with("exit code 1: error: é€"), "{reason}");
        assert!(reason.ends_with("..."), "{reason}");
        assert!(!reason.contains("earlier line"), "no room for it: {reason}");
        // Lines that do not all fit: the last ones that do.
        let log = format!("{}\n{}\nerror: short\n", "a".repeat(300), "b".repeat(300));
        let reason = reason_of(json!({"containerStatuses": [container(json!(
            {"terminated": {"exitCode": 2, "message": log}}))]}))
        .unwrap();
        assert_eq!(reason, format!("exit code 2: {} | error: short", "b".repeat(300)));
    }

    #[test]
    fn the_newest_pod_that_says_something_is_the_one_reported() {
        let failed = |name: &str, created: &str, message: &str| {
            pod(
                name,
                created,
                json!({"containerStatuses": [container(json!(
                    {"terminated": {"exitCode": 1, "message": message}}))]}),
            )
        };
        let pods = [
            failed("j-aaaaa", "2026-03-01T10:00:00Z", "error: first try"),
            failed("j-ccccc", "2026-03-01T10:02:00Z", "error: last try"),
            failed("j-bbbbb", "2026-03-01T10:01:00Z", "error: second try"),
            // A retry pod just created: nothing to say yet.
            pod("j-ddddd", "2026-03-01T10:03:00Z", json!({"phase": "Pending"})),
        ];
        assert_eq!(
            newest_reason(&pods),
            Some(PodReason {
                pod: "j-ccccc".into(),
                reason: "exit code 1: error: last try".into()
            })
        );
    }
}
