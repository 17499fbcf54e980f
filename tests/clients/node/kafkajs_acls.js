// Manages ACLs through Kafka's own admin APIs (CreateAcls, DescribeAcls,
// DeleteAcls) as a SASL user: grants User:carol READ on topic PREFIX-orders
// and WRITE on every topic starting with PREFIX, lists carol's ACLs, deletes
// the READ one and lists again.
//
// usage: node kafkajs_acls.js BOOTSTRAP MECHANISM USER PASSWORD PREFIX
// output: {"described": [...], "deleted": N, "remaining": [...]}
// Failures print "error: ..." on stderr and exit 1.
'use strict';

const {
  Kafka, logLevel, AclResourceTypes, AclOperationTypes, AclPermissionTypes,
  ResourcePatternTypes,
} = require('kafkajs');

async function main() {
  const [bootstrap, mechanism, username, password, prefix] = process.argv.slice(2);
  const kafka = new Kafka({
    clientId: 'acl-test',
    brokers: [bootstrap],
    logLevel: logLevel.NOTHING,
    sasl: { mechanism: mechanism.toLowerCase(), username, password },
    retry: { retries: 0 },
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const carol = { principal: 'User:carol', host: '*', permissionType: AclPermissionTypes.ALLOW };
    await admin.createAcls({
      acl: [
        { ...carol, resourceType: AclResourceTypes.TOPIC, resourceName: `${prefix}-orders`,
          resourcePatternType: ResourcePatternTypes.LITERAL, operation: AclOperationTypes.READ },
        { ...carol, resourceType: AclResourceTypes.TOPIC, resourceName: prefix,
          resourcePatternType: ResourcePatternTypes.PREFIXED, operation: AclOperationTypes.WRITE },
      ],
    });
    const filter = {
      resourceType: AclResourceTypes.ANY, resourcePatternType: ResourcePatternTypes.ANY,
      principal: 'User:carol', host: '*', operation: AclOperationTypes.ANY,
      permissionType: AclPermissionTypes.ANY,
    };
    const summary = ({ resources }) => resources.flatMap((r) => r.acls.map((a) =>
      `${r.resourceName}/${r.resourcePatternType}/${a.operation}/${a.permissionType}`)).sort();
    const described = summary(await admin.describeAcls(filter));
    const { filterResponses } = await admin.deleteAcls({
      filters: [{ ...filter, operation: AclOperationTypes.READ }],
    });
    const deleted = filterResponses[0].matchingAcls.length;
    const remaining = summary(await admin.describeAcls(filter));
    console.log(JSON.stringify({ described, deleted, remaining }));
  } finally {
    await admin.disconnect();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`error: ${error.message}`);
    process.exit(1);
  },
);
