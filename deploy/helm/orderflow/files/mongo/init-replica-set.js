// Initiate the MongoDB replica set once; safe to run again (mongosh script).
//
// Environment: RS_NAME (e.g. rs0) and RS_MEMBERS (comma-separated host:port,
// the first one preferred as primary). Used by the Helm chart's init Job and by
// the compose file's mongo-init service.
const rsName = process.env.RS_NAME || "rs0";
const hosts = (process.env.RS_MEMBERS || "localhost:27017").split(",").filter((h) => h);

let initiated = true;
try {
  rs.status();
} catch (error) {
  if (error.codeName !== "NotYetInitialized" && error.code !== 94) {
    throw error;
  }
  initiated = false;
}

if (!initiated) {
  const members = hosts.map((host, index) => ({
    _id: index,
    host: host,
    priority: index === 0 ? 2 : 1,
  }));
  rs.initiate({ _id: rsName, members: members });
  print(`replica set ${rsName} initiated with ${hosts.length} member(s)`);
} else {
  print(`replica set already initiated: ${rs.conf()._id}`);
}

// Wait (up to 3 minutes) for a primary, so that the next Job can write.
let primary = null;
for (let attempt = 0; attempt < 180 && !primary; attempt += 1) {
  try {
    primary = rs.status().members.find((m) => m.stateStr === "PRIMARY") || null;
  } catch (error) {
    primary = null;
  }
  if (!primary) {
    sleep(1000);
  }
}
if (!primary) {
  throw new Error("no PRIMARY elected within 180 s");
}
print(`primary: ${primary.name}`);
