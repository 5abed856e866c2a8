// A metrics-only GenAI producer: a Node.js app recording gen_ai.client.token.usage (and
// gen_ai.client.operation.duration) with @opentelemetry/sdk-metrics, exported by
// @opentelemetry/exporter-metrics-otlp-http (OTLP/JSON), one export per step.
//
//   node metrics.js URL cumulative|delta SEED STEPS INSTANCE
//
// Prints one JSON line: the tokens and calls recorded, the data points exported per metric
// and the exports that failed. Every number derives from SEED.
'use strict';
const { MeterProvider, PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics');
const {
  OTLPMetricExporter, AggregationTemporalityPreference,
} = require('@opentelemetry/exporter-metrics-otlp-http');
const { resourceFromAttributes } = require('@opentelemetry/resources');

const [url, temporality, seed, steps, instance] = process.argv.slice(2);
let state = Number(seed);
function rand(n) {
  state = (state * 48271) % 2147483647; // MINSTD: exact in doubles
  return state % n;
}

async function main() {
  const exporter = new OTLPMetricExporter({
    url,
    temporalityPreference: temporality === 'delta'
      ? AggregationTemporalityPreference.DELTA : AggregationTemporalityPreference.CUMULATIVE,
  });
  const points = {};
  let failures = 0;
  const send = exporter.export.bind(exporter);
  exporter.export = (metrics, done) => {
    for (const scope of metrics.scopeMetrics) {
      for (const metric of scope.metrics) {
        const name = metric.descriptor.name;
        points[name] = (points[name] || 0) + metric.dataPoints.length;
      }
    }
    send(metrics, (result) => {
      if (result.code !== 0) failures += 1;
      done(result);
    });
  };
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3600000 });
  const provider = new MeterProvider({
    resource: resourceFromAttributes({ 'service.name': 'node-app', 'service.instance.id': instance }),
    readers: [reader],
  });
  const meter = provider.getMeter('node-genai', '1.0.0');
  const usage = meter.createHistogram('gen_ai.client.token.usage', { unit: '{token}' });
  const duration = meter.createHistogram('gen_ai.client.operation.duration', { unit: 's' });
  const totals = { input: 0, output: 0, calls: 0 };
  for (let step = 0; step < Number(steps); step += 1) {
    const calls = rand(4); // some steps record nothing: unchanged points
    for (let call = 0; call < calls; call += 1) {
      const model = ['gpt-4o-mini', 'claude-sonnet-4'][rand(2)];
      const attrs = {
        'gen_ai.operation.name': 'chat', 'gen_ai.provider.name': 'openai',
        'gen_ai.request.model': model, 'user.id': `user-${rand(2)}`,
      };
      const input = 1 + rand(2000);
      const output = 1 + rand(500);
      usage.record(input, { ...attrs, 'gen_ai.token.type': 'input' });
      usage.record(output, { ...attrs, 'gen_ai.token.type': 'output' });
      duration.record(0.5, attrs);
      totals.input += input;
      totals.output += output;
      totals.calls += 1;
    }
    await reader.forceFlush();
  }
  await provider.shutdown();
  console.log(JSON.stringify({ ...totals, points, failures }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
