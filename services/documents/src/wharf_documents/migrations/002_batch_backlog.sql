-- A batch's items in flight (fed and not yet finished), so that each finished
-- item tops its batch's window up by counting the few still out rather than
-- every item of the batch. Derived from the jobs themselves, it stays right
-- while tasks of an older version feed the same batch during a rolling deploy.
CREATE INDEX jobs_batch_in_flight ON jobs (batch_id)
    WHERE batch_id IS NOT NULL AND fed AND status IN ('queued', 'rendering');

-- Work this service holds outside the bus: batch items not yet fed to it (only
-- batch items are ever unfed). Every scaler adds it to the depth of the
-- wharf.documents.* queues: wharf autoscale, KEDA's postgresql trigger and the
-- queue-depth metric the tasks publish to CloudWatch.
CREATE VIEW backlog AS SELECT count(*) AS items FROM jobs WHERE NOT fed;
