// The seeds' JavaScript snippet, run with the official stream-chat SDK against hookrelay.
// HR_STEP=seed (default) appends the hooks and prints them, with a few other answers, as JSON;
// HR_STEP=clear clears them and prints what is left. Used by tests/test_app_settings.py.
import { StreamChat } from "stream-chat";

const client = new StreamChat(process.env.HR_KEY, process.env.HR_SECRET, {
  baseURL: process.env.HR_URL,
});

if (process.env.HR_STEP === "clear") {
  await client.updateAppSettings({ event_hooks: [] });
  const cleared = (await client.getAppSettings()).app.event_hooks;
  console.log(JSON.stringify({ cleared }));
  process.exit(0);
}

// STEP 1: Get current app settings to preserve existing hooks
const response = await client.getAppSettings();
let existingHooks = response.app.event_hooks || [];

// STEP 2: Add SQS hook while preserving existing hooks
const newSQSHook = {
  enabled: true,
  hook_type: "sqs",
  sqs_queue_url: process.env.HR_QUEUE_URL,
  sqs_region: "us-east-1",
  sqs_auth_type: "keys",
  sqs_key: "yourkey",
  sqs_secret: "yoursecret",
  event_types: [],
};
await client.updateAppSettings({ event_hooks: [...existingHooks, newSQSHook] });

// The SNS snippet, on top of what is there now.
existingHooks = (await client.getAppSettings()).app.event_hooks;
const newSNSHook = {
  enabled: true,
  hook_type: "sns",
  sns_topic_arn: process.env.HR_TOPIC_ARN,
  sns_region: "us-east-1",
  sns_auth_type: "keys",
  sns_key: "yourkey",
  sns_secret: "yoursecret",
  event_types: [],
};
await client.updateAppSettings({ event_hooks: [...existingHooks, newSNSHook] });
const hooks = (await client.getAppSettings()).app.event_hooks;

const check = await client.testSQSSettings({
  sqs_key: "k",
  sqs_secret: "s",
  sqs_url: "https://foo.com/bar",
});
const hookEvents = await client.getHookEvents();

console.log(JSON.stringify({ hooks, check, hook_events: hookEvents.events }));
