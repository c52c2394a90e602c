//! A streaming source as DataFusion sees it: a table whose scan yields the rows of the
//! current micro-batch.
//!
//! The query is planned once. Before each batch the runtime puts the batch's rows into the
//! source's [`BatchSlot`]; executing the (reset) plan then reads them through [`SlotExec`].
//! The slot's batches are split into contiguous runs over the partitions, so the rows keep
//! their order when the output partitions are read in turn (see `compile.rs`).

use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, SchedulingType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream,
};

/// The rows of one source for the batch being executed.
#[derive(Debug, Default)]
pub struct BatchSlot {
    batches: Mutex<Vec<RecordBatch>>,
}

impl BatchSlot {
    /// Puts this batch's rows in place.
    pub fn set(&self, batches: Vec<RecordBatch>) {
        *self.batches.lock().expect("slot lock") = batches;
    }

    /// Empties the slot (after a batch, so its memory is freed).
    pub fn clear(&self) {
        self.batches.lock().expect("slot lock").clear();
    }

    /// The `partition`th of `partitions` contiguous runs of the batches, so that the plan's
    /// output partitions, read one after another, keep the rows in their order.
    fn partition(&self, partition: usize, partitions: usize) -> Vec<RecordBatch> {
        let batches = self.batches.lock().expect("slot lock");
        let (n, parts) = (batches.len(), partitions.max(1));
        let (from, to) = (n * partition / parts, n * (partition + 1) / parts);
        batches[from.min(n)..to.min(n)].to_vec()
    }
}

/// A source table registered in DataFusion's catalog.
#[derive(Debug)]
pub struct SourceTable {
    name: String,
    schema: SchemaRef,
    slot: Arc<BatchSlot>,
    partitions: usize,
}

impl SourceTable {
    /// A table named `name` reading `slot`, split over `partitions` partitions.
    pub fn new(name: &str, schema: SchemaRef, slot: Arc<BatchSlot>, partitions: usize) -> Self {
        Self { name: name.to_string(), schema, slot, partitions: partitions.max(1) }
    }

    /// The slot this table reads.
    pub fn slot(&self) -> Arc<BatchSlot> {
        Arc::clone(&self.slot)
    }
}

#[async_trait]
impl TableProvider for SourceTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => Arc::clone(&self.schema),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(self.partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        )
        .with_scheduling_type(SchedulingType::Cooperative);
        Ok(Arc::new(SlotExec {
            source: self.name.clone(),
            schema,
            projection: projection.cloned(),
            slot: Arc::clone(&self.slot),
            partitions: self.partitions,
            properties: Arc::new(properties),
        }))
    }
}

/// The leaf of a compiled plan that reads a [`BatchSlot`].
#[derive(Debug)]
pub struct SlotExec {
    source: String,
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    slot: Arc<BatchSlot>,
    partitions: usize,
    properties: Arc<PlanProperties>,
}

impl SlotExec {
    /// The source table this leaf reads.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The slot's columns this leaf reads, by index; `None`: all of them.
    pub fn projection(&self) -> Option<&Vec<usize>> {
        self.projection.as_ref()
    }
}

impl DisplayAs for SlotExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SlotExec: source={}, partitions={}", self.source, self.partitions)
    }
}

impl ExecutionPlan for SlotExec {
    fn name(&self) -> &str {
        "SlotExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let batches = self.slot.partition(partition, self.partitions);
        let stream = MemoryStream::try_new(batches, Arc::clone(&self.schema), self.projection.clone())?;
        Ok(Box::pin(stream))
    }
}
