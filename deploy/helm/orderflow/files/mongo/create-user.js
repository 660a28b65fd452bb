// Create (or update) orderflow's own MongoDB user; safe to run again (mongosh script).
//
// Runs as the root user against the replica set. Environment: APP_DB,
// APP_USER, APP_PASSWORD. The user gets readWrite (data) and dbAdmin (the
// store creates its collections with validators and unique indexes) on APP_DB
// only, so the application never holds the root password.
const dbName = process.env.APP_DB;
const user = process.env.APP_USER;
const pwd = process.env.APP_PASSWORD;
if (!dbName || !user || !pwd) {
  throw new Error("APP_DB, APP_USER and APP_PASSWORD must be set");
}

const target = db.getSiblingDB(dbName);
const roles = [
  { role: "readWrite", db: dbName },
  { role: "dbAdmin", db: dbName },
];
if (target.getUser(user)) {
  target.updateUser(user, { pwd: pwd, roles: roles });
  print(`updated user ${user} on ${dbName}`);
} else {
  target.createUser({ user: user, pwd: pwd, roles: roles });
  print(`created user ${user} on ${dbName}`);
}
