// A test MCP server built on the official TypeScript SDK's low-level `Server` (v1 line,
// `@modelcontextprotocol/sdk`, speaks up to 2025-11-25), the twin of
// tests/harness/catalog_server.py: it serves a catalog read from a JSON file (tools with
// their `inputSchema` exactly as written, via setRequestHandler(ListToolsRequestSchema):
// McpServer.registerTool would generate schemas from zod), prompts, resources and
// resource templates. The SDK is the one installed for the demo's weather server
// (demo/servers/weather/node_modules), resolved from there.
//
// Options (see harness/catalog_servers.py for the catalog format):
// --sse           answers as text/event-stream (the SDK's default); otherwise JSON
//                 (enableJsonResponse)
// --page-size N   list answers carry at most N entries and a nextCursor
// --header-log    every HTTP request's MCP/gateway headers, one JSON line each
// --dispatch-log  every tools/call the SDK dispatches: name and arguments, before it runs
// List answers are marked cacheScope "public" with a long ttlMs (fields a v1 server does
// not know, passed through), so a test sees the gateway tighten a list it filtered.
// No argument validation: whatever arrives is dispatched and logged.
//
//   node tests/harness/catalog_server.mjs --port 8011 --catalog catalog.json [--sse] [--page-size 3]

import { appendFileSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, '..', '..', 'demo', 'servers', 'weather', 'package.json'));
const { Server } = require('@modelcontextprotocol/sdk/server/index.js');
const { StreamableHTTPServerTransport } = require('@modelcontextprotocol/sdk/server/streamableHttp.js');
const types = require('@modelcontextprotocol/sdk/types.js');

const { values: args } = parseArgs({
    options: {
        host: { type: 'string', default: '127.0.0.1' },
        port: { type: 'string' },
        catalog: { type: 'string' },
        sse: { type: 'boolean', default: false },
        'page-size': { type: 'string', default: '0' },
        'header-log': { type: 'string' },
        'dispatch-log': { type: 'string' }
    }
});
if (!args.port || !args.catalog) {
    console.error('usage: catalog_server.mjs --port N --catalog FILE [--sse] [--page-size N]');
    process.exit(2);
}

const catalog = JSON.parse(readFileSync(args.catalog, 'utf8'));
const pageSize = Number(args['page-size']) || 0;
const PUBLIC_CACHE = { ttlMs: 300000, cacheScope: 'public' };
// Same prefixes as demo/server_logs.py's SHOWN.
const SHOWN = ['x-mcp-', 'x-agent-id', 'x-user-id', 'mcp-', 'authorization', 'traceparent'];

function logLine(path, record) {
    // One synchronous append per line: lines from concurrent requests never interleave.
    if (path) appendFileSync(path, JSON.stringify(record) + '\n');
}

function listed(key, request) {
    const entries = catalog[key] ?? [];
    const start = Number(request.params?.cursor ?? 0) || 0;
    const end = pageSize ? start + pageSize : entries.length;
    const result = { [key]: entries.slice(start, end), ...PUBLIC_CACHE };
    if (end < entries.length) result.nextCursor = String(end);
    return result;
}

function build() {
    const server = new Server(
        { name: catalog.name ?? 'catalog-server', version: catalog.version ?? '1.0.0' },
        { capabilities: { tools: {}, prompts: {}, resources: {} } }
    );
    server.setRequestHandler(types.ListToolsRequestSchema, async request => listed('tools', request));
    server.setRequestHandler(types.CallToolRequestSchema, async request => {
        const { name, arguments: callArgs } = request.params;
        logLine(args['dispatch-log'], { method: 'tools/call', name, arguments: callArgs ?? null });
        if (!(catalog.tools ?? []).some(tool => tool.name === name)) {
            return { content: [{ type: 'text', text: `unknown tool ${name}` }], isError: true };
        }
        return { content: [{ type: 'text', text: JSON.stringify({ tool: name, arguments: callArgs ?? null }) }] };
    });
    server.setRequestHandler(types.ListPromptsRequestSchema, async request => listed('prompts', request));
    server.setRequestHandler(types.GetPromptRequestSchema, async request => ({
        messages: [{ role: 'user', content: { type: 'text', text: `prompt ${request.params.name}` } }]
    }));
    server.setRequestHandler(types.ListResourcesRequestSchema, async request => listed('resources', request));
    server.setRequestHandler(types.ListResourceTemplatesRequestSchema, async request => listed('resourceTemplates', request));
    server.setRequestHandler(types.ReadResourceRequestSchema, async request => ({
        contents: [{ uri: request.params.uri, mimeType: 'text/plain', text: `resource ${request.params.uri}` }]
    }));
    return server;
}

async function handleMcp(req, res) {
    // Stateless: a new server and transport per POST, no Mcp-Session-Id.
    const server = build();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: !args.sse });
    res.on('close', () => {
        void transport.close();
        void server.close();
    });
    try {
        await server.connect(transport);
        await transport.handleRequest(req, res);
    } catch (error) {
        console.error('error handling MCP request:', error);
        if (!res.headersSent) {
            res.writeHead(500, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal server error' }, id: null }));
        }
    }
}

const http = createServer((req, res) => {
    const headers = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const name = req.rawHeaders[i].toLowerCase();
        if (SHOWN.some(prefix => name.startsWith(prefix))) headers.push([name, req.rawHeaders[i + 1]]);
    }
    logLine(args['header-log'], { method: req.method, path: req.url, headers });
    const path = new URL(req.url, 'http://localhost').pathname;
    if (path !== '/mcp') {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found\n');
    } else if (req.method === 'POST') {
        void handleMcp(req, res);
    } else {
        res.writeHead(405, { 'content-type': 'application/json', allow: 'POST' });
        res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed.' }, id: null }));
    }
});
http.listen(Number(args.port), args.host);
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => http.close(() => process.exit(0)));
