//! Who may do what: a principal (an authenticated caller: its name, the
//! portals it reaches and its roles) and the one rule deciding whether it may
//! make a call that needs a role on a portal. Default deny: a role is held
//! only when granted, and no role implies another.
use std::collections::BTreeSet;

use super::DomainError;

/// What a call needs: `Read` for reads, streams, exports and the change
/// feed; `Write` for writes, imports and merges; `Admin` for limits, labels
/// and the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Read, Role::Write, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == text)
    }
}

/// The portals a principal reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortalScope {
    All,
    Only(BTreeSet<i64>),
}

impl PortalScope {
    pub fn reaches(&self, portal: i64) -> bool {
        match self {
            PortalScope::All => true,
            PortalScope::Only(portals) => portals.contains(&portal),
        }
    }

    /// The one portal of a single-portal scope (REST takes its portal from
    /// the token, as HubSpot does).
    pub fn single(&self) -> Option<i64> {
        match self {
            PortalScope::Only(portals) if portals.len() == 1 => portals.first().copied(),
            _ => None,
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Who it is, as the audit trail and plugins see it.
    pub name: String,
    pub scope: PortalScope,
    pub roles: BTreeSet<Role>,
}

impl Principal {
    /// Allowed when the principal holds `role` (whatever the portal).
    pub fn require_role(&self, role: Role) -> Result<(), DomainError> {
        if self.roles.contains(&role) {
            return Ok(());
        }
        Err(DomainError::PermissionDenied(format!(
            "'{}' lacks the {} role this call needs",
            self.name,
            role.name()
        )))
    }

    /// Allowed when the principal holds `role` and reaches `portal`.
    pub fn authorize(&self, role: Role, portal: i64) -> Result<(), DomainError> {
        self.require_role(role)?;
        if !self.scope.reaches(portal) {
            return Err(DomainError::PermissionDenied(format!(
                "'{}' has no access to portal {portal}",
                self.name
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(portals: Option<&[i64]>, roles: &[Role]) -> Principal {
        Principal {
            name: "svc".into(),
            scope: match portals {
                None => PortalScope::All,
                Some(p) => PortalScope::Only(p.iter().copied().collect()),
            },
            roles: roles.iter().copied().collect(),
        }
    }

    #[test]
    fn a_call_needs_its_role_and_its_portal() {
        let reader = principal(Some(&[7, 8]), &[Role::Read]);
        assert!(reader.authorize(Role::Read, 7).is_ok());
        assert!(reader.authorize(Role::Read, 9).is_err());
        assert!(reader.authorize(Role::Write, 7).is_err());
        assert!(reader.authorize(Role::Admin, 7).is_err());
        let admin = principal(None, &[Role::Admin]);
        assert!(admin.authorize(Role::Admin, 12345).is_ok());
        // No role implies another.
        assert!(admin.authorize(Role::Read, 12345).is_err());
    }

    #[test]
    fn roles_parse_by_name() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.name()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
