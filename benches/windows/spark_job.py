"""The PySpark side of benches/windows/run: the same windowed count as weir's pipeline.

    spark-submit --master local[2] spark_job.py IN_DIR OUT_DIR CHECKPOINT MAX_FILES PROGRESS_OUT

Reads IN_DIR as newline-delimited JSON with maxFilesPerTrigger = MAX_FILES, counts rows per
1-minute tumbling window and user_id with a 1-minute watermark on ts
(`withWatermark("ts", "1 minute").groupBy(window("ts", "1 minute"), "user_id").count()`),
flattens the window into window_start and window_end, writes Parquet to OUT_DIR in append
mode with trigger(availableNow=True), and writes every batch's StreamingQueryProgress as one
JSON line to PROGRESS_OUT.
"""
import sys

from pyspark.sql import SparkSession
from pyspark.sql.functions import col, window
from pyspark.sql.types import DoubleType, StringType, StructField, StructType, TimestampType

in_dir, out_dir, checkpoint, max_files, progress_out = sys.argv[1:6]
spark = SparkSession.builder.appName(f"weir-windows-{max_files}").getOrCreate()
spark.sparkContext.setLogLevel("WARN")
schema = StructType([
    StructField("user_id", StringType()),
    StructField("ts", TimestampType()),
    StructField("value", DoubleType()),
])
events = spark.readStream.schema(schema).option("maxFilesPerTrigger", int(max_files)).json(in_dir)
counts = (
    events.withWatermark("ts", "1 minute")
    .groupBy(window("ts", "1 minute"), "user_id")
    .count()
    .select(col("window.start").alias("window_start"), col("window.end").alias("window_end"), "user_id", col("count").alias("n"))
)
query = (
    counts.writeStream.format("parquet")
    .outputMode("append")
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
