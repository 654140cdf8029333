// Differential oracle: an MCP server built with the official TypeScript SDK (v2,
// `@modelcontextprotocol/server`, which speaks 2026-07-28 and replaces the v1 package
// `@modelcontextprotocol/sdk`, whose newest release stops at 2025-11-25).
//
// It serves the demo server's tools (demo/mcp_server.py) over Streamable HTTP and logs:
// - every HTTP request, with the headers the gateway tests look at (--header-log,
//   the format of demo/mcp_server.py's HeaderLog);
// - every request the SDK dispatches to a handler (--dispatch-log): the JSON-RPC
//   method and, for tools/call, the tool name, as the SDK parsed the body, written
//   after the SDK validated the request and before the tool runs (known tool or not).
//
//   node tests/oracles/ts_server.mjs --port 8001 --header-log h.jsonl --dispatch-log d.jsonl

import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import { toNodeHandler } from '@modelcontextprotocol/node';
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import * as z from 'zod';

const { values: args } = parseArgs({
    options: {
        host: { type: 'string', default: '127.0.0.1' },
        port: { type: 'string' },
        'header-log': { type: 'string' },
        'dispatch-log': { type: 'string' }
    }
});

// Same prefixes as demo/mcp_server.py's SHOWN.
const SHOWN = ['x-mcp-', 'x-agent-id', 'x-user-id', 'mcp-', 'authorization', 'traceparent'];

function logLine(path, record) {
    // One synchronous append per line: lines from concurrent requests never interleave.
    if (path) appendFileSync(path, JSON.stringify(record) + '\n');
}

const ACCOUNTS = { 'acc-001': { balance: 1520.75, currency: 'EUR' }, 'acc-002': { balance: 98.1, currency: 'EUR' } };

/**
 * Wraps the low-level server's `setRequestHandler` so that every handler McpServer
 * registers afterwards logs the request it is handed. The SDK calls that handler with
 * the request it has already validated against the method's schema, so a line means
 * "dispatched", and nothing is logged for a body the SDK refused.
 */
function logDispatches(mcp, path) {
    const low = mcp.server;
    const register = low.setRequestHandler.bind(low);
    low.setRequestHandler = (method, schemasOrHandler, maybeHandler) => {
        const log = request => {
            const record = { method };
            if (method === 'tools/call') record.name = request?.params?.name ?? request?.name;
            logLine(path, record);
        };
        if (typeof schemasOrHandler === 'function') {
            const handler = schemasOrHandler;
            return register(method, (request, ctx) => {
                log(request);
                return handler(request, ctx);
            });
        }
        return register(method, schemasOrHandler, (params, ctx) => {
            log({ params });
            return maybeHandler(params, ctx);
        });
    };
}

function financialData() {
    const mcp = new McpServer({ name: 'financial-data', version: '1.3.2' });
    if (args['dispatch-log']) logDispatches(mcp, args['dispatch-log']);
    const text = value => ({ content: [{ type: 'text', text: typeof value === 'string' ? value : JSON.stringify(value) }] });
    mcp.registerTool(
        'get_account_balance',
        { description: 'Current balance of an account.', inputSchema: z.object({ account_id: z.string() }) },
        async ({ account_id }) => {
            const account = ACCOUNTS[account_id];
            if (!account) return { ...text(`unknown account ${account_id}`), isError: true };
            return text({ account_id, ...account });
        }
    );
    mcp.registerTool(
        'query_transactions',
        {
            description: 'Recent transactions of an account.',
            inputSchema: z.object({ account_id: z.string(), limit: z.number().int().optional() })
        },
        async () => text([])
    );
    mcp.registerTool(
        'transfer_funds',
        {
            description: 'Move money between accounts (needs the tools.write scope at the gateway).',
            inputSchema: z.object({ from_account: z.string(), to_account: z.string(), amount: z.number() })
        },
        async ({ from_account, to_account, amount }) => text(`transferred ${amount.toFixed(2)} from ${from_account} to ${to_account}`)
    );
    mcp.registerTool(
        'export_statement',
        { description: 'Slow export that reports progress.', inputSchema: z.object({ account_id: z.string() }) },
        async ({ account_id }) => text(`statement for ${account_id}`)
    );
    mcp.registerTool(
        'generate_report',
        { description: 'Monthly report.', inputSchema: z.object({ account_id: z.string(), months: z.number().int().optional() }) },
        async ({ account_id, months }) => text(`report for ${account_id}: ${months ?? 1} months`)
    );
    return mcp;
}

const handler = toNodeHandler(createMcpHandler(() => financialData()));

const server = createServer((req, res) => {
    if (args['header-log']) {
        const headers = [];
        for (let i = 0; i < req.rawHeaders.length; i += 2) {
            const name = req.rawHeaders[i].toLowerCase();
            if (SHOWN.some(prefix => name.startsWith(prefix))) headers.push([name, req.rawHeaders[i + 1]]);
        }
        logLine(args['header-log'], { method: req.method, path: req.url, headers });
    }
    void handler(req, res);
});
server.listen(Number(args.port), args.host);
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
