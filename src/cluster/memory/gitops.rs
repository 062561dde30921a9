//! GitOps on the in-memory cluster: field ownership as the API server records it in
//! `managedFields`, the owners' view ([`ObjectInfo`]) and the holds.
//!
//! Ownership follows the API server's rules for the two ways a field is written: aiops's
//! patches (`Update`) take a field they change from its previous managers; a controller's
//! forced server-side apply ([`MemoryCluster::revert_field`](super::MemoryCluster::revert_field))
//! takes it back. A Flux Kustomization's hold is the annotation on the workload itself; Argo CD
//! and HelmRelease holds, whose objects this cluster does not have, are kept in
//! [`State::holds`](super::State::holds).

use super::Inner;
use super::state::{Container, HeldController, Kind, Workload};
use crate::cluster::quantity::{format_memory, parse_memory};
use crate::cluster::{Error, Result, Target};
use crate::gitops::{
    Controller, FLUX_RECONCILE, FLUX_RECONCILE_DISABLED, Field, FieldChange, FieldState,
    HoldMechanism, HoldPlacement, Manager, ObjectInfo,
};

/// aiops's field manager, as the Kubernetes backend writes it.
pub(super) const AIOPS: &str = "aiops";

/// Every field of one container the repairs change.
fn container_fields(name: &str) -> [Field; 3] {
    let container = name.to_owned();
    [
        Field::MemoryLimit {
            container: container.clone(),
        },
        Field::MemoryRequest {
            container: container.clone(),
        },
        Field::Image { container },
    ]
}

/// A container's field as the API server writes it (`512Mi`, `web:v1`).
fn container_value(c: &Container, field: &Field) -> Option<String> {
    match field {
        Field::MemoryLimit { .. } => c.memory.limit.map(format_memory),
        Field::MemoryRequest { .. } => c.memory.request.map(format_memory),
        Field::Image { .. } => c.image.clone(),
        Field::Replicas | Field::RestartedAt => None,
    }
}

/// The container a field belongs to, if it is a container's.
fn container_of(field: &Field) -> Option<&str> {
    match field {
        Field::MemoryLimit { container }
        | Field::MemoryRequest { container }
        | Field::Image { container } => Some(container),
        Field::Replicas | Field::RestartedAt => None,
    }
}

/// Each container of `restored` whose image differs from the same container's in `current` (or
/// that `current` lacks): what a rollback puts back.
pub(super) fn restored_images(current: &[Container], restored: &[Container]) -> Vec<FieldChange> {
    restored
        .iter()
        .filter_map(|c| {
            let image = c.image.clone()?;
            let live = current.iter().find(|n| n.name == c.name);
            (live.and_then(|n| n.image.as_deref()) != Some(image.as_str())).then(|| FieldChange {
                field: Field::Image {
                    container: c.name.clone(),
                },
                value: image,
            })
        })
        .collect()
}

impl Workload {
    /// A field's live value.
    pub(super) fn value(&self, field: &Field) -> Option<String> {
        match field {
            Field::Replicas => (self.kind != Kind::DaemonSet).then(|| self.replicas.to_string()),
            Field::RestartedAt => self.restarted_at.clone(),
            other => {
                let name = container_of(other)?;
                let c = self.containers.iter().find(|c| c.name == name)?;
                container_value(c, other)
            }
        }
    }

    /// Every field with a value: what a manager applying the whole object owns.
    fn set_fields(&self) -> Vec<Field> {
        let mut fields: Vec<Field> = self
            .containers
            .iter()
            .flat_map(|c| container_fields(&c.name))
            .chain([Field::Replicas, Field::RestartedAt])
            .collect();
        fields.retain(|f| self.value(f).is_some());
        fields
    }

    /// At load: the `Apply` managers of the state file own every field it gives.
    pub(super) fn init_owners(&mut self) {
        let mut appliers: Vec<String> = Vec::new();
        for m in self.managers.iter().filter(|m| m.operation == "Apply") {
            if !appliers.contains(&m.name) {
                appliers.push(m.name.clone());
            }
        }
        if appliers.is_empty() {
            return;
        }
        for field in self.set_fields() {
            self.owners.insert(field, appliers.clone());
        }
    }

    /// `manager` wrote the fields whose value differs from `before` (the workload as it was):
    /// the API server makes it their only owner, and lists it among the managers.
    pub(super) fn take_changed(&mut self, before: &Workload, manager: &str, operation: &str) {
        let mut fields = before.set_fields();
        fields.extend(self.set_fields());
        for field in fields {
            if before.value(&field) != self.value(&field) {
                self.owners.insert(field, vec![manager.to_owned()]);
            }
        }
        self.join(manager, operation);
    }

    /// Lists `manager` in `managedFields` (once per operation).
    pub(super) fn join(&mut self, manager: &str, operation: &str) {
        let m = Manager {
            name: manager.to_owned(),
            operation: operation.to_owned(),
        };
        if !self.managers.contains(&m) {
            self.managers.push(m);
        }
    }

    fn same(&self, target: &Target) -> bool {
        self.namespace == target.namespace
            && self.name == target.name
            && self.kind.as_str().eq_ignore_ascii_case(&target.kind)
    }
}

impl Inner {
    pub(super) fn object_info(&self, target: &Target) -> Result<ObjectInfo> {
        let w = self.workload(target)?;
        Ok(ObjectInfo {
            labels: w.labels.clone(),
            annotations: w.annotations.clone(),
            managers: w.managers.clone(),
        })
    }

    pub(super) fn observe(&self, target: &Target, fields: &[Field]) -> Result<Vec<FieldState>> {
        let w = self.workload(target)?;
        Ok(fields
            .iter()
            .map(|field| {
                let value = w.value(field);
                FieldState {
                    field: field.clone(),
                    managers: match value {
                        Some(_) => w.owners.get(field).cloned().unwrap_or_default(),
                        None => Vec::new(),
                    },
                    value,
                }
            })
            .collect())
    }

    pub(super) fn hold(
        &mut self,
        target: &Target,
        controller: &Controller,
        dry_run: bool,
    ) -> Result<HoldPlacement> {
        let w = self.workload_mut(target)?;
        w.check_enabled()?;
        let mechanism = match controller {
            Controller::FluxKustomization { .. } => HoldMechanism::FluxObjectAnnotation,
            Controller::FluxHelmRelease { .. } => HoldMechanism::FluxHelmReleaseSuspend,
            Controller::ArgoCd { .. } => HoldMechanism::ArgoAutomatedOff,
        };
        // Only the annotation has a value here to put back (a person's own `disabled`);
        // the controllers' objects are not modelled.
        let saved = match mechanism {
            HoldMechanism::FluxObjectAnnotation => w.annotations.get(FLUX_RECONCILE).cloned(),
            _ => None,
        };
        if dry_run {
            return Ok(HoldPlacement { mechanism, saved });
        }
        let key = w.key();
        let kind = w.kind;
        if mechanism == HoldMechanism::FluxObjectAnnotation {
            w.annotations.insert(
                FLUX_RECONCILE.to_owned(),
                FLUX_RECONCILE_DISABLED.to_owned(),
            );
            w.join(AIOPS, "Update");
        } else {
            let held = HeldController {
                namespace: target.namespace.clone(),
                kind,
                name: target.name.clone(),
                controller: controller.clone(),
                mechanism,
            };
            if !self.state.holds.contains(&held) {
                self.state.holds.push(held);
            }
        }
        self.actions.push(format!(
            "hold {key} ({controller}: {})",
            mechanism.describe()
        ));
        Ok(HoldPlacement { mechanism, saved })
    }

    pub(super) fn release(
        &mut self,
        target: &Target,
        controller: &Controller,
        placement: &HoldPlacement,
    ) -> Result<()> {
        let key = format!("{}/{}/{}", target.namespace, target.kind, target.name);
        if placement.mechanism == HoldMechanism::FluxObjectAnnotation {
            // A workload that is gone has nothing left to release.
            let Some(w) = self.state.workloads.iter_mut().find(|w| w.same(target)) else {
                return Ok(());
            };
            match &placement.saved {
                Some(value) => w
                    .annotations
                    .insert(FLUX_RECONCILE.to_owned(), value.clone()),
                None => w.annotations.remove(FLUX_RECONCILE),
            };
        } else {
            let before = self.state.holds.len();
            self.state.holds.retain(|h| {
                !(h.namespace == target.namespace
                    && h.name == target.name
                    && h.kind.as_str().eq_ignore_ascii_case(&target.kind)
                    && h.controller == *controller
                    && h.mechanism == placement.mechanism)
            });
            if self.state.holds.len() == before {
                return Ok(());
            }
        }
        self.actions.push(format!(
            "release {key} ({controller}: {})",
            placement.mechanism.describe()
        ));
        Ok(())
    }

    /// Sets `field` to `value` as `manager`'s forced server-side apply would: the value
    /// changes (a template field rolls out a new revision) and `manager` owns the field alone.
    pub(super) fn revert_field(
        &mut self,
        target: &Target,
        field: &Field,
        value: &str,
        manager: &str,
    ) -> Result<()> {
        let w = self.workload_mut(target)?;
        let what = w.describe();
        let before = w.clone();
        match field {
            Field::Replicas => {
                w.replicas = value
                    .parse()
                    .map_err(|e| Error::Refused(format!("replicas {value:?} of {what}: {e}")))?;
            }
            Field::RestartedAt => w.restarted_at = Some(value.to_owned()),
            other => {
                let name = container_of(other).unwrap_or_default();
                let mut containers = w.containers.clone();
                let c = containers
                    .iter_mut()
                    .find(|c| c.name == name)
                    .ok_or_else(|| Error::NotFound(format!("container {name} in {what}")))?;
                let memory = || {
                    parse_memory(value)
                        .map(Some)
                        .map_err(|e| Error::Refused(format!("{other} of {what}: {e}")))
                };
                match other {
                    Field::MemoryLimit { .. } => c.memory.limit = memory()?,
                    Field::MemoryRequest { .. } => c.memory.request = memory()?,
                    _ => c.image = Some(value.to_owned()),
                }
                if containers != w.containers {
                    w.new_template(containers);
                }
            }
        }
        w.take_changed(&before, manager, "Apply");
        // A forced apply takes the field even when the value was already the same.
        w.owners.insert(field.clone(), vec![manager.to_owned()]);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
