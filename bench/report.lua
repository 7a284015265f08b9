-- Shared by the bench scripts (loaded with dofile): prints one machine-readable
-- line at the end of a wrk run. bench/run.py reads it; wrk's own text report
-- above it stays for humans. Latencies are in microseconds, as wrk reports
-- them (including wrk 4.1's coordinated-omission correction).
--
-- A pipelined run has no usable latency: wrk records one sample per batch and
-- then "corrects" the histogram with an interval computed from all responses,
-- so its percentiles come out as 0 (wg/wrk issue 236). The pipelined script
-- sets pipeline_depth, and run.py shows no latency for it.

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'KAGE_BENCH {"requests":%d,"duration_us":%d,"bytes":%d,"pipeline":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"mean":%.1f,"stdev":%.1f,"max":%d,' ..
      '"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
      summary.requests, summary.duration, summary.bytes, pipeline_depth or 1,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9)))
end
