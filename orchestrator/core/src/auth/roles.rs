//! Roles as ring layers and the one table of who may call what.

pub use cadre_proto::Role;

/// Every call a principal can make, on any face.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// TaskService.Get.
    GetTask,
    /// TaskService.List.
    ListTasks,
    /// TaskService.Watch.
    WatchTasks,
    /// TaskService.Submit and SubmitAndWait.
    SubmitTask,
    /// TaskService.Cancel.
    CancelTask,
    /// SupervisorPeer.Delegate.
    Delegate,
    /// AdminService.Status and SupervisorPeer.Status.
    Status,
    /// AdminService.Scale.
    Scale,
    /// AdminService.ReloadConfig.
    Reload,
    /// /metrics when it is not public.
    ReadMetrics,
    /// AdminService.IssueToken.
    IssueToken,
    /// AdminService.CreateApiKey, ListApiKeys, RevokeApiKey.
    ManageKeys,
    /// AdminService.RevokeToken: revoke a JWT by id or every token of a subject.
    RevokeToken,
    /// AdminService.RotateSigningKey: make a new JWT signing key.
    RotateKeys,
    /// AdminService.Usage (own tenant; commanders any).
    ReadUsage,
    /// WorkerService.Attach: run tasks as a remote worker (sees every tenant's params of
    /// its task types).
    ConnectWorker,
    /// WorkflowService.RegisterWorkflow: definitions are node-wide, like routes.
    RegisterWorkflow,
    /// WorkflowService.ListWorkflows and GetWorkflow.
    ReadWorkflows,
    /// WorkflowService.Signal (an approval may ask for a higher role).
    Signal,
    /// ScheduleService.CreateSchedule, Pause, Resume, Trigger, Delete (own tenant; commanders any).
    ManageSchedules,
    /// ScheduleService.GetSchedule and ListSchedules (own tenant; commanders any).
    ReadSchedules,
    /// AdminService.Pause (and ListPauses): hold a supervisor, pool, type prefix or tenant.
    Pause,
    /// AdminService.Resume.
    Resume,
    /// SupervisorPeer.SetPauses: replace a node's pause set (tier 0's node credential).
    ApplyPauses,
    /// SupervisorPeer.SetCredentials: replace a node's revocations and rotated signing keys
    /// (tier 0's node credential).
    ApplyCredentials,
}

impl Action {
    /// Every action, for tests and docs.
    pub const ALL: [Action; 25] = [
        Action::GetTask,
        Action::ListTasks,
        Action::WatchTasks,
        Action::SubmitTask,
        Action::CancelTask,
        Action::Delegate,
        Action::Status,
        Action::Scale,
        Action::Reload,
        Action::ReadMetrics,
        Action::IssueToken,
        Action::ManageKeys,
        Action::RevokeToken,
        Action::RotateKeys,
        Action::ReadUsage,
        Action::ConnectWorker,
        Action::RegisterWorkflow,
        Action::ReadWorkflows,
        Action::Signal,
        Action::ManageSchedules,
        Action::ReadSchedules,
        Action::Pause,
        Action::Resume,
        Action::ApplyPauses,
        Action::ApplyCredentials,
    ];

    /// The name used in audit records.
    pub fn name(self) -> &'static str {
        match self {
            Action::GetTask => "task.get",
            Action::ListTasks => "task.list",
            Action::WatchTasks => "task.watch",
            Action::SubmitTask => "task.submit",
            Action::CancelTask => "task.cancel",
            Action::Delegate => "task.delegate",
            Action::Status => "admin.status",
            Action::Scale => "admin.scale",
            Action::Reload => "admin.reload",
            Action::ReadMetrics => "metrics.read",
            Action::IssueToken => "token.issue",
            Action::ManageKeys => "key.manage",
            Action::RevokeToken => "auth.revoke_token",
            Action::RotateKeys => "auth.rotate_keys",
            Action::ReadUsage => "usage.read",
            Action::ConnectWorker => "worker.connect",
            Action::RegisterWorkflow => "workflow.register",
            Action::ReadWorkflows => "workflow.read",
            Action::Signal => "workflow.signal",
            Action::ManageSchedules => "schedule.manage",
            Action::ReadSchedules => "schedule.read",
            Action::Pause => "admin.pause",
            Action::Resume => "admin.resume",
            Action::ApplyPauses => "pause.apply",
            Action::ApplyCredentials => "credentials.apply",
        }
    }

    /// The innermost ring allowed to do this. This is the whole permission table.
    pub fn min_role(self) -> Role {
        match self {
            Action::GetTask
            | Action::ListTasks
            | Action::WatchTasks
            | Action::ReadUsage
            | Action::ReadWorkflows
            | Action::ReadSchedules => Role::Observer,
            Action::SubmitTask
            | Action::CancelTask
            | Action::Delegate
            | Action::Signal
            | Action::ManageSchedules => Role::Operator,
            Action::Status
            | Action::Scale
            | Action::Reload
            | Action::ReadMetrics
            | Action::ConnectWorker
            | Action::RegisterWorkflow
            | Action::Pause
            | Action::Resume => Role::Supervisor,
            Action::IssueToken
            | Action::ManageKeys
            | Action::RevokeToken
            | Action::RotateKeys
            | Action::ApplyPauses
            | Action::ApplyCredentials => Role::Commander,
        }
    }
}

/// Who is calling: established by a token or an API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Token subject or API key name.
    pub subject: String,
    /// The tenant whose tasks it works on.
    pub tenant: String,
    /// Its ring.
    pub role: Role,
}

impl Principal {
    /// The principal used when `auth.mode = "none"`: a commander of tenant `default`.
    pub fn anonymous() -> Self {
        Principal {
            subject: "anonymous".into(),
            tenant: "default".into(),
            role: Role::Commander,
        }
    }

    /// Whether the ring allows `action`.
    pub fn may(&self, action: Action) -> bool {
        self.role >= action.min_role()
    }

    /// Tasks of which tenant this principal may see: None = every tenant (commander).
    pub fn tenant_scope(&self) -> Option<&str> {
        (self.role != Role::Commander).then_some(self.tenant.as_str())
    }

    /// Whose data a read that asks for `asked` returns: this principal's own tenant's, or for
    /// a commander `asked`'s, or every tenant's (None) when `asked` is empty.
    pub fn reads_tenant(&self, asked: &str) -> Option<String> {
        match self.tenant_scope() {
            Some(own) => Some(own.to_string()),
            None => (!asked.is_empty()).then(|| asked.to_string()),
        }
    }

    /// Whether a task of `tenant` is visible to this principal.
    pub fn sees(&self, tenant: &str) -> bool {
        self.tenant_scope().is_none_or(|t| t == tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_include_the_inner_rings() {
        for action in Action::ALL {
            let allowed: Vec<Role> = Role::ALL
                .into_iter()
                .filter(|r| {
                    Principal {
                        subject: "s".into(),
                        tenant: "t".into(),
                        role: *r,
                    }
                    .may(action)
                })
                .collect();
            assert_eq!(allowed.first(), Some(&action.min_role()), "{action:?}");
            assert!(allowed.contains(&Role::Commander), "{action:?}");
            assert_eq!(
                allowed.len(),
                Role::ALL.len() - action.min_role() as usize,
                "{action:?}"
            );
        }
        assert!("Operator".parse::<Role>().is_ok());
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn only_commanders_see_other_tenants() {
        let op = Principal {
            subject: "s".into(),
            tenant: "a".into(),
            role: Role::Supervisor,
        };
        assert!(op.sees("a") && !op.sees("b"));
        let cmd = Principal {
            role: Role::Commander,
            ..op
        };
        assert!(cmd.sees("b"));
    }
}
