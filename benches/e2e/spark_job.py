"""The PySpark side of benches/e2e/run: the same deduplication as weir's pipeline.

    spark-submit --master local[2] spark_job.py IN_DIR OUT_DIR CHECKPOINT MAX_FILES PROGRESS_OUT

Reads IN_DIR as newline-delimited JSON with maxFilesPerTrigger = MAX_FILES, keeps the first
row of every event_id with a 10-minute watermark on ts (dropDuplicatesWithinWatermark), writes
Parquet to OUT_DIR with trigger(availableNow=True), and writes every batch's
StreamingQueryProgress as one JSON line to PROGRESS_OUT.
"""
import sys

from pyspark.sql import SparkSession
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType, TimestampType

in_dir, out_dir, checkpoint, max_files, progress_out = sys.argv[1:6]
spark = SparkSession.builder.appName(f"weir-e2e-{max_files}").getOrCreate()
spark.sparkContext.setLogLevel("WARN")
schema = StructType([
    StructField("event_id", StringType()),
    StructField("user_id", LongType()),
    StructField("amount", DoubleType()),
    StructField("ts", TimestampType()),
])
events = spark.readStream.schema(schema).option("maxFilesPerTrigger", int(max_files)).json(in_dir)
deduped = events.withWatermark("ts", "10 minutes").dropDuplicatesWithinWatermark(["event_id"])
query = (
    deduped.writeStream.format("parquet")
    .option("path", out_dir)
    .option("checkpointLocation", checkpoint)
    .trigger(availableNow=True)
    .start()
)
query.awaitTermination()
with open(progress_out, "w") as fh:
    for p in query.recentProgress:
        fh.write(p.json.replace("\n", " ") + "\n")
spark.stop()
