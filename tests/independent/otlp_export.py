"""Exports GenAI spans to tracevault with the unmodified OpenTelemetry Python
SDK and its OTLP/HTTP protobuf exporter (opentelemetry-exporter-otlp-proto-http).

Usage: otlp_export.py ENDPOINT TOKEN COMPRESSION(gzip|none) CONVERSATION_ID [NAMESPACE]

ENDPOINT `env` leaves endpoint and headers to the standard environment variables
(OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS), as a deployment would.

Records three spans (a chat call in the current GenAI conventions with
reasoning and a tool call, the tool execution, and a chat call in the legacy
per-message event shape), then exports the same finished spans twice, as a
client does when it retries after a timeout. Prints a JSON summary: the export
results and the spans' trace/span ids (hex).
"""

import json
import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

endpoint, token, compression, conversation = sys.argv[1:5]
namespace = sys.argv[5] if len(sys.argv) > 5 else None

memory = InMemorySpanExporter()
provider = TracerProvider(resource=Resource.create({"service.name": "agent-under-test"}))
provider.add_span_processor(SimpleSpanProcessor(memory))
tracer = provider.get_tracer("tracevault-test", "1.0")

input_messages = [
    {"role": "user", "parts": [{"type": "text", "content": "What is the weather in Paris?"}]},
]
output_messages = [
    {
        "role": "assistant",
        "parts": [
            {"type": "reasoning", "content": "The user wants weather; call the weather tool."},
            {"type": "text", "content": "Let me check the weather."},
            {
                "type": "tool_call",
                "id": "call_1",
                "name": "get_weather",
                "arguments": {"city": "Paris"},
            },
        ],
        "finish_reason": "tool_call",
    }
]

with tracer.start_as_current_span("invoke_agent weather-bot", kind=SpanKind.INTERNAL) as agent:
    agent.set_attribute("gen_ai.operation.name", "invoke_agent")
    agent.set_attribute("gen_ai.agent.name", "weather-bot")
    agent.set_attribute("gen_ai.conversation.id", conversation)
    with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as chat:
        chat.set_attribute("gen_ai.operation.name", "chat")
        chat.set_attribute("gen_ai.provider.name", "openai")
        chat.set_attribute("gen_ai.request.model", "gpt-4o")
        chat.set_attribute("gen_ai.response.model", "gpt-4o-2024-08-06")
        chat.set_attribute("gen_ai.conversation.id", conversation)
        chat.set_attribute("gen_ai.usage.input_tokens", 42)
        chat.set_attribute("gen_ai.usage.output_tokens", 17)
        chat.set_attribute(
            "gen_ai.system_instructions",
            json.dumps([{"type": "text", "content": "You are a weather assistant."}]),
        )
        chat.set_attribute("gen_ai.input.messages", json.dumps(input_messages))
        chat.set_attribute("gen_ai.output.messages", json.dumps(output_messages))
    with tracer.start_as_current_span("execute_tool get_weather", kind=SpanKind.INTERNAL) as tool:
        tool.set_attribute("gen_ai.operation.name", "execute_tool")
        tool.set_attribute("gen_ai.tool.name", "get_weather")
        tool.set_attribute("gen_ai.tool.call.id", "call_1")
        tool.set_attribute("gen_ai.conversation.id", conversation)
        tool.set_attribute("gen_ai.tool.call.arguments", json.dumps({"city": "Paris"}))
        tool.set_attribute("gen_ai.tool.call.result", json.dumps({"temp_c": 18}))
    with tracer.start_as_current_span("chat legacy-model", kind=SpanKind.CLIENT) as legacy:
        legacy.set_attribute("gen_ai.system", "openai")
        legacy.set_attribute("gen_ai.request.model", "legacy-model")
        legacy.set_attribute("gen_ai.conversation.id", conversation)
        legacy.add_event(
            "gen_ai.user.message", {"content": "Summarise: 18 degrees in Paris."}
        )
        legacy.add_event(
            "gen_ai.choice",
            {"index": 0, "finish_reason": "stop", "message": json.dumps({"content": "Paris: 18 C."})},
        )
        legacy.set_status(Status(StatusCode.OK))

spans = memory.get_finished_spans()
headers = {"authorization": f"Bearer {token}"}
if namespace:
    headers["x-tracevault-namespace"] = namespace
compression = Compression.Gzip if compression == "gzip" else Compression.NoCompression
if endpoint == "env":
    exporter = OTLPSpanExporter(compression=compression, timeout=30)
else:
    exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers, compression=compression, timeout=30)
first = exporter.export(spans)
# A client retrying after a lost response sends the very same spans again.
second = exporter.export(spans)
print(
    json.dumps(
        {
            "results": [first.name, second.name],
            "spans": [
                {
                    "name": s.name,
                    "trace_id": format(s.context.trace_id, "032x"),
                    "span_id": format(s.context.span_id, "016x"),
                }
                for s in spans
            ],
        }
    )
)
