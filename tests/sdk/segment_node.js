// Drives the real @segment/analytics-node SDK against Shoal.
//
// usage: node segment_node.js SDK_DIR HOST WRITE_KEY PREFIX TIMESTAMP_MS
//
// Prints JSON: each HTTP response the SDK saw (from its documented `http_response` event) and
// every error it emitted.
const path = require('path')
const [sdkDir, host, writeKey, prefix, atText] = process.argv.slice(2)
const { Analytics } = require(path.join(sdkDir, 'node_modules', '@segment', 'analytics-node'))

async function main() {
  const at = new Date(Number(atText))
  const analytics = new Analytics({ writeKey, host, flushAt: 20, flushInterval: 1000, maxRetries: 3 })
  const requests = []
  const errors = []
  analytics.on('http_response', (response) => {
    requests.push({ path: new URL(response.url).pathname, status: response.status })
  })
  analytics.on('error', (error) => errors.push(String(error.reason ?? error.code ?? error)))
  const userId = `${prefix}-user`
  analytics.identify({ userId, traits: { email: 'linus@example.com', plan: 'enterprise' }, timestamp: at, messageId: `${prefix}-m1` })
  analytics.track({ userId, event: 'Invited', properties: { invites: 2 }, timestamp: at, messageId: `${prefix}-m2` })
  analytics.group({ userId, groupId: `${prefix}-acct`, traits: { name: 'Initech' }, timestamp: at, messageId: `${prefix}-m3` })
  analytics.page({ anonymousId: `${prefix}-anon`, name: 'Pricing', properties: { url: '/pricing' }, timestamp: at, messageId: `${prefix}-m4` })
  analytics.screen({ userId, name: 'Settings', timestamp: at, messageId: `${prefix}-m5` })
  analytics.alias({ userId, previousId: `${prefix}-anon`, timestamp: at, messageId: `${prefix}-m6` })
  await analytics.closeAndFlush({ timeout: 20000 })
  console.log(JSON.stringify({ requests, errors }))
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
