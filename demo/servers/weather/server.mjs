// The example fleet's weather server (registry/examples/weather.yaml), built with the
// official TypeScript SDK, v1 line (`@modelcontextprotocol/sdk`), as a team that has not
// moved to the v2 packages would run it. The v1 SDK speaks protocol versions up to
// 2025-11-25 (initialize handshake), so clients of the 2026-07-28 era negotiate down.
//
// Streamable HTTP on /mcp, stateless: every POST gets a new McpServer and transport (no
// Mcp-Session-Id), so any instance can answer any request. Like demo/mcp_server.py:
// - every HTTP request is appended to --header-log as one JSON line with the MCP and
//   gateway headers it carried, so the tests can see exactly what reached the server;
// - every tools/call the SDK dispatches is appended to --dispatch-log with the tool name
//   as the SDK parsed it (known tool or not), before the tool runs.
//
//   node demo/servers/weather/server.mjs --port 8002 --header-log /tmp/seen.jsonl

import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import * as z from 'zod';

const { values: args } = parseArgs({
    options: {
        host: { type: 'string', default: '127.0.0.1' },
        port: { type: 'string', default: '8002' },
        'header-log': { type: 'string' },
        'dispatch-log': { type: 'string' }
    }
});

// Same prefixes as demo/mcp_server.py's SHOWN: the gateway's labels, the client's MCP
// transport headers, and the ones that must never arrive (the client's token).
const SHOWN = ['x-mcp-', 'x-agent-id', 'x-user-id', 'mcp-', 'authorization', 'traceparent'];

function logLine(path, record) {
    // One synchronous append per line: lines from concurrent requests never interleave.
    if (path) appendFileSync(path, JSON.stringify(record) + '\n');
}

// Small fake data: a week of forecast per city, alerts per two-letter region code.
const FORECASTS = {
    berlin: ['cloudy', 'rain', 'rain', 'sunny', 'cloudy', 'windy', 'sunny'],
    lisbon: ['sunny', 'sunny', 'cloudy', 'sunny', 'sunny', 'rain', 'sunny'],
    oslo: ['snow', 'snow', 'cloudy', 'sunny', 'snow', 'cloudy', 'cloudy']
};
const HIGHS = { berlin: 9, lisbon: 19, oslo: -2 };
const ALERTS = {
    CA: [{ severity: 'moderate', event: 'wildfire smoke', until: '2026-11-14T18:00:00Z' }],
    NO: [{ severity: 'severe', event: 'storm', until: '2026-11-13T06:00:00Z' }],
    PT: []
};

const text = value => ({ content: [{ type: 'text', text: typeof value === 'string' ? value : JSON.stringify(value) }] });

/**
 * Wraps the low-level server's `setRequestHandler` so that the tools/call handler
 * McpServer registers logs the tool name of each request it is handed. The SDK calls
 * that handler with the request it has already parsed against CallToolRequestSchema,
 * before it looks the tool up: a line means "dispatched", known tool or not.
 */
function logDispatches(mcp, path) {
    const low = mcp.server;
    const register = low.setRequestHandler.bind(low);
    low.setRequestHandler = (schema, handler) =>
        register(schema, (request, extra) => {
            if (request.method === 'tools/call') logLine(path, { method: 'tools/call', name: request.params?.name });
            return handler(request, extra);
        });
}

// Input schemas mirror registry/examples/schemas/get_forecast_v1.json and
// get_alerts_v1.json; strict objects, as the registered schemas forbid additional
// properties. The SDK validates each call's arguments with them.
const INPUT_SCHEMAS = {
    get_forecast: z.strictObject({ city: z.string(), days: z.number().int().min(1).max(7).optional() }),
    get_alerts: z.strictObject({ region: z.string().regex(/^[A-Z]{2}$/) })
};
// What tools/list advertises for them (see advertise2020), converted once.
const ADVERTISED = Object.fromEntries(
    Object.entries(INPUT_SCHEMAS).map(([name, schema]) => [name, z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input' })])
);

/**
 * Makes tools/list advertise each tool's schema in JSON Schema 2020-12, the dialect the
 * registry's files (and MCP, for a schema without `$schema`) use. The v1 SDK converts
 * zod to draft-07 (`"$schema": "http://json-schema.org/draft-07/schema#"`), whose
 * content is the same here but whose `$schema` differs, so the gateway would count every
 * tool as drifted (`changed`). The zod schemas stay the ones the SDK validates calls with.
 */
function advertise2020(mcp) {
    const low = mcp.server;
    const register = low.setRequestHandler.bind(low);
    low.setRequestHandler = (schema, handler) =>
        register(schema, async (request, extra) => {
            const result = await handler(request, extra);
            if (request.method !== 'tools/list') return result;
            for (const tool of result.tools) if (ADVERTISED[tool.name]) tool.inputSchema = ADVERTISED[tool.name];
            return result;
        });
}

function weather() {
    const mcp = new McpServer({ name: 'weather', version: '2.0.1' });
    // Before the first registerTool: that is when McpServer installs its handlers.
    advertise2020(mcp);
    if (args['dispatch-log']) logDispatches(mcp, args['dispatch-log']);
    mcp.registerTool(
        'get_forecast',
        {
            description: 'Daily forecast for a city, 1 to 7 days (3 by default).',
            inputSchema: INPUT_SCHEMAS.get_forecast
        },
        async ({ city, days }) => {
            const key = city.toLowerCase();
            const outlook = FORECASTS[key];
            if (!outlook) return { ...text(`unknown city ${city}`), isError: true };
            const forecast = outlook.slice(0, days ?? 3).map((sky, day) => ({ day: day + 1, sky, high_c: HIGHS[key] + (day % 3) }));
            return text({ city, forecast });
        }
    );
    mcp.registerTool(
        'get_alerts',
        {
            description: 'Active weather alerts for a region (two-letter code, e.g. NO).',
            inputSchema: INPUT_SCHEMAS.get_alerts
        },
        async ({ region }) => text({ region, alerts: ALERTS[region] ?? [] })
    );
    return mcp;
}

function methodNotAllowed(res) {
    // Stateless: no session, so no standalone SSE stream (GET) and nothing to end (DELETE).
    res.writeHead(405, { 'content-type': 'application/json', allow: 'POST' });
    res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed.' }, id: null }));
}

async function handleMcp(req, res) {
    const mcp = weather();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => {
        void transport.close();
        void mcp.close();
    });
    try {
        await mcp.connect(transport);
        // No parsed body: the transport reads and parses the request itself.
        await transport.handleRequest(req, res);
    } catch (error) {
        console.error('error handling MCP request:', error);
        if (!res.headersSent) {
            res.writeHead(500, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal server error' }, id: null }));
        }
    }
}

const server = createServer((req, res) => {
    if (args['header-log']) {
        const headers = [];
        for (let i = 0; i < req.rawHeaders.length; i += 2) {
            const name = req.rawHeaders[i].toLowerCase();
            if (SHOWN.some(prefix => name.startsWith(prefix))) headers.push([name, req.rawHeaders[i + 1]]);
        }
        logLine(args['header-log'], { method: req.method, path: req.url, headers });
    }
    const path = new URL(req.url, 'http://localhost').pathname;
    if (path !== '/mcp') {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found\n');
    } else if (req.method === 'POST') {
        void handleMcp(req, res);
    } else {
        methodNotAllowed(res);
    }
});
server.listen(Number(args.port), args.host);
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
