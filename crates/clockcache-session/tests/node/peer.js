// A Vendure peer for the interop tests (tests/node.rs): the Redis session cache strategy
// exactly as the Vendure docs give it (ioredis, keys `${namespace}:${token}`, SET ... EX 86400,
// GET + JSON.parse, DEL), and sessions built as Vendure's SessionService.serializeSession
// builds them (`expires` a Date, `cacheExpiry` Date.now() / 1000 + sessionCacheTTL).
//
// Usage: node peer.js <command> <port> <argument>
//   set <port> <json>   builds a CachedSession from <json> (id, token, expires as an ISO
//                       string, activeOrderId, activeChannelId, and for an authenticated
//                       session authenticationStrategy and user), stores it, and prints
//                       {"written": <the stored string>, "ttl": <Redis TTL in seconds>}
//   get <port> <token>  prints {"session": <JSON.parse of the stored value, or null>,
//                       "expiresIso": <new Date(session.expires).toISOString()>}
//   del <port> <token>  prints {"deleted": <keys removed>}
'use strict';

const { Redis } = require('ioredis');

const DEFAULT_NAMESPACE = 'vendure-session-cache';
const DEFAULT_TTL = 86400;
// Vendure's default `authOptions.sessionCacheTTL`, in seconds.
const SESSION_CACHE_TTL = 300;

// The strategy of the Vendure docs ("SessionCacheStrategy", the Redis example), with
// console.error in place of Vendure's Logger.error.
class RedisSessionCacheStrategy {
    constructor(options) {
        this.options = options;
    }

    init() {
        this.client = new Redis(this.options.redisOptions);
        this.client.on('error', err => console.error(`RedisSessionCacheStrategy: ${err.message}`));
    }

    async destroy() {
        await this.client.quit();
    }

    async get(sessionToken) {
        try {
            const retrieved = await this.client.get(this.namespace(sessionToken));
            if (retrieved) {
                try {
                    return JSON.parse(retrieved);
                } catch (e) {
                    console.error(`Could not parse cached session data: ${e.message}`);
                }
            }
        } catch (e) {
            console.error(`Could not get cached session: ${e.message}`);
        }
    }

    async set(session) {
        try {
            await this.client.set(this.namespace(session.token), JSON.stringify(session), 'EX', DEFAULT_TTL);
        } catch (e) {
            console.error(`Could not set cached session: ${e.message}`);
        }
    }

    async delete(sessionToken) {
        try {
            await this.client.del(this.namespace(sessionToken));
        } catch (e) {
            console.error(`Could not delete cached session: ${e.message}`);
        }
    }

    clear() {
        // The docs' example leaves this empty too.
    }

    namespace(key) {
        return `${this.options.namespace ?? DEFAULT_NAMESPACE}:${key}`;
    }
}

// As Vendure's SessionService.serializeSession: the keys in its order, the user only for an
// authenticated session.
function serializeSession(input) {
    const session = {
        cacheExpiry: new Date().getTime() / 1000 + SESSION_CACHE_TTL,
        id: input.id,
        token: input.token,
        expires: new Date(input.expires),
        activeOrderId: input.activeOrderId ?? null,
        activeChannelId: input.activeChannelId ?? null,
    };
    if (input.user) {
        session.authenticationStrategy = input.authenticationStrategy;
        session.user = {
            id: input.user.id,
            identifier: input.user.identifier,
            verified: input.user.verified,
            // As Vendure's getUserChannelsPermissions builds each entry.
            channelPermissions: (input.user.channelPermissions ?? []).map(c => ({
                id: c.id,
                token: c.token,
                code: c.code,
                permissions: c.permissions,
            })),
        };
    }
    return session;
}

async function run(command, port, arg) {
    const strategy = new RedisSessionCacheStrategy({
        namespace: DEFAULT_NAMESPACE,
        redisOptions: { host: '127.0.0.1', port: Number(port), maxRetriesPerRequest: 1 },
    });
    strategy.init();
    try {
        switch (command) {
            case 'set': {
                const session = serializeSession(JSON.parse(arg));
                await strategy.set(session);
                const written = await strategy.client.get(strategy.namespace(session.token));
                const ttl = await strategy.client.ttl(strategy.namespace(session.token));
                return { written, ttl };
            }
            case 'get': {
                const session = (await strategy.get(arg)) ?? null;
                const expiresIso = session ? new Date(session.expires).toISOString() : null;
                return { session, expiresIso };
            }
            case 'del': {
                // The docs' delete returns nothing; count what it removed around it.
                const before = await strategy.client.exists(strategy.namespace(arg));
                await strategy.delete(arg);
                const after = await strategy.client.exists(strategy.namespace(arg));
                return { deleted: before - after };
            }
            default:
                throw new Error(`unknown command ${JSON.stringify(command)}`);
        }
    } finally {
        await strategy.destroy();
    }
}

async function main() {
    const [command, port, ...rest] = process.argv.slice(2);
    process.stdout.write(JSON.stringify(await run(command, port, rest.join(' '))) + '\n');
}

main().catch(err => {
    console.error(err.stack ?? String(err));
    process.exit(1);
});
