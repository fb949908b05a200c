-- The global audit list (`GET /admin/api/v1/audit`, `/admin/audit`) is newest first by
-- (at, id) and filtered by target, actor, action and a time range: one index per filter that
-- also holds that order, so a page is an index range whatever the log's size. The target
-- index replaces the one on target alone.
DROP INDEX audit_log_target;
CREATE INDEX audit_log_target_at ON audit_log (target, at, id);
CREATE INDEX audit_log_actor_at ON audit_log (actor, at, id);
CREATE INDEX audit_log_action_at ON audit_log (action, at, id);
CREATE INDEX audit_log_at ON audit_log (at, id);
